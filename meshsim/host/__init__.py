"""The host OS, in one place: processes (`procs`), iproute2 (`iproute`), /proc statistics (`procstats`)."""

"""Calico label selectors: `parse(expr) -> Selector` and `Selector.matches(labels)`.

Owns the selector language of libcalico-go `lib/selector` as nodeSelector/peerSelector use it:
all(), has(k), k == 'v', k != 'v', k in {..}, k not in {..}, !, &&, || and parentheses
(precedence ! > && > ||); an empty selector means all(). A small hand-written tokenizer and a
recursive-descent parser build a frozen tree whose str() is a canonical rendering that parses
back to an equal tree. Errors are `meshsim.errors.SelectorError` with a 0-based position and
a message naming what was expected. Pure: stdlib only, no asyncio, no clock. About 450 lines: the tokenizer,
the parser and the tree belong together (one grammar).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshsim.errors import SelectorError

__all__ = [
    "All",
    "And",
    "Eq",
    "Has",
    "In",
    "Ne",
    "Not",
    "NotIn",
    "Or",
    "Selector",
    "parse",
]

# Calico's LabelKeyMatcher is [a-zA-Z0-9_./-]; keys such as projectcalico.org/zone.
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WHITESPACE = frozenset(" \t\r\n")
_PUNCT = {"(": "LPAREN", ")": "RPAREN", "{": "LBRACE", "}": "RBRACE", ",": "COMMA"}
_QUOTES = frozenset("'\"")
_OPERATORS = "==, !=, in, not in"
_TERM_START = "a label key, has(, all(), ! or ("
MAX_NESTING = 64  # parentheses; Calico's own parser has no limit, a real selector never nests past a few


# -- the tree ---------------------------------------------------------------------------


class Selector:
    """A parsed selector expression; every node of the tree is a Selector."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if a resource with these labels is selected."""
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


def _quote(value: str) -> str:
    """Render a string literal: single quotes unless the value contains one (Calico has no escapes)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"a selector value cannot contain both quote characters: {value!r}")


def _normalise_values(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class All(Selector):
    """all(): matches every label set."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Has(Selector):
    """has(k): the label is present, whatever its value."""

    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class Eq(Selector):
    """k == 'v': the label is present with exactly this value."""

    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key} == {_quote(self.value)}"


@dataclass(frozen=True)
class Ne(Selector):
    """k != 'v': the label is absent or has another value."""

    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key} != {_quote(self.value)}"


@dataclass(frozen=True)
class In(Selector):
    """k in {'a', 'b'}: the label is present with one of these values; {} matches nothing."""

    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _normalise_values(self.values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels and labels[self.key] in self.values

    def __str__(self) -> str:
        return f"{self.key} in {{{', '.join(_quote(v) for v in self.values)}}}"


@dataclass(frozen=True)
class NotIn(Selector):
    """k not in {'a', 'b'}: the label is absent or has none of these values."""

    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _normalise_values(self.values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not (self.key in labels and labels[self.key] in self.values)

    def __str__(self) -> str:
        return f"{self.key} not in {{{', '.join(_quote(v) for v in self.values)}}}"


@dataclass(frozen=True)
class Not(Selector):
    """!x: negation of a sub-expression."""

    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        if isinstance(self.operand, (All, Has, Not)):
            return f"!{self.operand}"
        return f"!({self.operand})"


@dataclass(frozen=True)
class And(Selector):
    """x && y && ...: every operand matches."""

    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return " && ".join(f"({op})" if isinstance(op, Or) else str(op) for op in self.operands)


@dataclass(frozen=True)
class Or(Selector):
    """x || y || ...: at least one operand matches."""

    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return " || ".join(str(op) for op in self.operands)


# -- the tokenizer ----------------------------------------------------------------------


class _Kind(enum.Enum):
    IDENT = "label key"
    STRING = "string"
    LPAREN = "("
    RPAREN = ")"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    EQ = "=="
    NE = "!="
    AND = "&&"
    OR = "||"
    NOT = "!"
    UNKNOWN = "unknown"  # a run of characters that is no token; the parser says what it expected instead
    ERROR = "error"  # a tokenizer error (unterminated string), raised when the parser reaches it
    EOF = "end of selector"


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str  # the source text; for STRING the value between the quotes, for ERROR the message
    pos: int  # 0-based index of the token's first character
    end: int  # index just past the token


def _is_unknown_char(ch: str) -> bool:
    return not (ch in _WHITESPACE or ch in _KEY_CHARS or ch in _QUOTES or ch in _PUNCT)


def _tokenize(expr: str) -> list[_Token]:
    """Split expr into tokens ending with EOF; a tokenizer error becomes an ERROR token in place."""
    tokens: list[_Token] = []
    i, n = 0, len(expr)
    while True:
        while i < n and expr[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(_Token(_Kind.EOF, "", n, n))
            return tokens
        ch, two = expr[i], expr[i:i + 2]
        if ch in _PUNCT:
            tokens.append(_Token(_Kind[_PUNCT[ch]], ch, i, i + 1))
            i += 1
        elif ch in _QUOTES:
            close = expr.find(ch, i + 1)
            if close < 0:
                tokens.append(_Token(_Kind.ERROR, f"unterminated string; expected a closing {ch!r}", i, n))
                tokens.append(_Token(_Kind.EOF, "", n, n))
                return tokens
            tokens.append(_Token(_Kind.STRING, expr[i + 1:close], i, close + 1))
            i = close + 1
        elif two in ("==", "!=", "&&", "||"):
            kind = {"==": _Kind.EQ, "!=": _Kind.NE, "&&": _Kind.AND, "||": _Kind.OR}[two]
            tokens.append(_Token(kind, two, i, i + 2))
            i += 2
        elif ch == "!":
            tokens.append(_Token(_Kind.NOT, ch, i, i + 1))
            i += 1
        elif ch in _KEY_CHARS:
            j = i
            while j < n and expr[j] in _KEY_CHARS:
                j += 1
            tokens.append(_Token(_Kind.IDENT, expr[i:j], i, j))
            i = j
        else:
            j = i
            while j < n and _is_unknown_char(expr[j]):
                j += 1
            tokens.append(_Token(_Kind.UNKNOWN, expr[i:j], i, j))
            i = j


# -- the parser -------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list: or_expr > and_expr > unary > primary."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.index = 0
        self.depth = 0  # open parentheses: bounded, so a hostile selector cannot exhaust the stack

    # token access

    def peek(self, ahead: int = 0) -> _Token:
        tok = self.tokens[min(self.index + ahead, len(self.tokens) - 1)]
        if tok.kind is _Kind.ERROR and ahead == 0:
            raise SelectorError(expr=self.expr, pos=tok.pos, message=tok.text)
        return tok

    def advance(self) -> _Token:
        tok = self.peek()
        if tok.kind is not _Kind.EOF:
            self.index += 1
        return tok

    def error(self, tok: _Token, message: str) -> SelectorError:
        return SelectorError(expr=self.expr, pos=tok.pos, message=message)

    def show(self, tok: _Token) -> str:
        """How a token is quoted in a message: its source text."""
        return repr(self.expr[tok.pos:tok.end])

    def expected(self, tok: _Token, what: str) -> SelectorError:
        """'expected X, got Y', or 'unexpected end of selector; expected X' at the end."""
        if tok.kind is _Kind.EOF:
            return self.error(tok, f"unexpected end of selector; expected {what}")
        return self.error(tok, f"expected {what}, got {self.show(tok)}")

    def expect(self, kind: _Kind, what: str) -> _Token:
        tok = self.peek()
        if tok.kind is not kind:
            raise self.expected(tok, what)
        return self.advance()

    # grammar

    def parse(self) -> Selector:
        if self.peek().kind is _Kind.EOF:
            return All()  # Calico: an empty selector is all()
        sel = self.or_expr()
        tok = self.peek()
        if tok.kind is not _Kind.EOF:
            raise self.error(tok, f"unexpected {self.show(tok)}; expected &&, || or end of selector")
        return sel

    def or_expr(self) -> Selector:
        items = [self.and_expr()]
        while self.peek().kind is _Kind.OR:
            self.advance()
            items.append(self.and_expr())
        return _join(Or, items)

    def and_expr(self) -> Selector:
        items = [self.unary()]
        while self.peek().kind is _Kind.AND:
            self.advance()
            items.append(self.unary())
        return _join(And, items)

    def unary(self) -> Selector:
        negated = False
        while self.peek().kind is _Kind.NOT:  # like Calico, a run of ! collapses to one boolean
            self.advance()
            negated = not negated
        sel = self.primary()
        return Not(sel) if negated else sel

    def primary(self) -> Selector:
        tok = self.peek()
        if tok.kind is _Kind.LPAREN:
            if self.depth >= MAX_NESTING:
                raise self.error(tok, f"parentheses nest deeper than {MAX_NESTING} levels")
            self.advance()
            self.depth += 1
            sel = self.or_expr()
            close = self.peek()
            if close.kind is not _Kind.RPAREN:
                raise self.expected(close, "')' to close '('")
            self.advance()
            self.depth -= 1
            return sel
        if tok.kind is _Kind.IDENT:
            if tok.text in ("has", "all") and self.peek(1).kind is _Kind.LPAREN:
                return self.call()
            return self.comparison()
        if tok.kind is _Kind.EOF:
            raise self.error(tok, f"unexpected end of selector; expected {_TERM_START}")
        raise self.error(tok, f"unexpected {self.show(tok)}; expected {_TERM_START}")

    def call(self) -> Selector:
        name = self.advance().text
        self.advance()  # the '('
        if name == "all":
            self.expect(_Kind.RPAREN, "')' after 'all('")
            return All()
        key = self.expect(_Kind.IDENT, "a label key after 'has('")
        self.expect(_Kind.RPAREN, "')' to close 'has('")
        return Has(key.text)

    def comparison(self) -> Selector:
        key = self.advance().text
        op = self.peek()
        if op.kind is _Kind.EQ or op.kind is _Kind.NE:
            self.advance()
            value = self.expect(_Kind.STRING, f"a quoted string after {op.text!r}").text
            return Eq(key, value) if op.kind is _Kind.EQ else Ne(key, value)
        if op.kind is _Kind.IDENT and op.text == "in":
            self.advance()
            return In(key, self.string_set("in"))
        if op.kind is _Kind.IDENT and op.text == "notin":  # Calico's `not\s*in` accepts this spelling
            self.advance()
            return NotIn(key, self.string_set("not in"))
        if op.kind is _Kind.IDENT and op.text == "not":
            self.advance()
            tok = self.peek()
            if not (tok.kind is _Kind.IDENT and tok.text == "in"):
                raise self.expected(tok, "'in' after 'not'")
            self.advance()
            return NotIn(key, self.string_set("not in"))
        if op.kind is _Kind.EOF:
            raise self.error(op, f"unexpected end of selector after label key {key!r}; expected {_OPERATORS}")
        if op.kind in (_Kind.IDENT, _Kind.UNKNOWN, _Kind.NOT):
            raise self.error(op, f"unknown operator {self._operator_text(op)!r}; expected {_OPERATORS}")
        raise self.error(op, f"expected {_OPERATORS} after label key {key!r}, got {self.show(op)}")

    def _operator_text(self, tok: _Token) -> str:
        """The would-be operator as written: a word, or the run of symbols at tok (e.g. '=~', '!~')."""
        if tok.kind is _Kind.IDENT:
            return tok.text
        end = tok.pos
        while end < len(self.expr) and _is_unknown_char(self.expr[end]):  # '!' and '=' are unknown chars here
            end += 1
        return self.expr[tok.pos:end]

    def string_set(self, op: str) -> tuple[str, ...]:
        """{'a', 'b'}; {} and a trailing comma are allowed, as in Calico."""
        self.expect(_Kind.LBRACE, f"'{{' after {op!r}")
        values: list[str] = []
        while True:
            tok = self.peek()
            if tok.kind is _Kind.RBRACE:
                self.advance()
                return tuple(values)
            if tok.kind is not _Kind.STRING:
                raise self.expected(tok, "a quoted string or '}' in the set")
            values.append(self.advance().text)
            sep = self.peek()
            if sep.kind is _Kind.COMMA:
                self.advance()
            elif sep.kind is not _Kind.RBRACE:
                raise self.expected(sep, "',' or '}' in the set")


def _join(cls: type[And] | type[Or], items: list[Selector]) -> Selector:
    """One item stays itself; nested operands of the same kind are flattened (a canonical tree)."""
    if len(items) == 1:
        return items[0]
    flat: list[Selector] = []
    for item in items:
        flat.extend(item.operands if isinstance(item, cls) else (item,))
    return cls(tuple(flat))


def parse(expr: str) -> Selector:
    """Parse a Calico selector; "" (or only whitespace) is all(). Raises SelectorError."""
    return _Parser(expr).parse()

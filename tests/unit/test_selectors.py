"""Calico label selectors: every operator, precedence, canonical str() and every error path."""

from __future__ import annotations

import pytest

from meshsim.errors import SelectorError
from meshsim.model.selectors import All, And, Eq, Has, In, Ne, Not, NotIn, Or, Selector, parse

RR = {"route-reflector": "true", "projectcalico.org/zone": "z1", "kubernetes.io/hostname": "node-1"}
LABEL_SETS: list[dict[str, str]] = [
    {},
    {"a": "x"},
    {"a": "y"},
    {"a": "x", "b": "y"},
    {"b": "x"},
    {"a": "", "b": ""},
    {"a": "it's", "c": 'say "hi"'},
    {"a": "x", "b": "x", "c": "x"},
    {"a_b": "1", "a.b": "2", "a-b": "3", "a/b": "4"},
    RR,
    {"route-reflector": "false", "projectcalico.org/zone": "z2"},
]


def sel(expr: str, labels: dict[str, str]) -> bool:
    return parse(expr).matches(labels)


def error(expr: str) -> SelectorError:
    with pytest.raises(SelectorError) as info:
        parse(expr)
    return info.value


# -- all() and the empty selector -------------------------------------------------------


@pytest.mark.parametrize("expr", ["all()", "", " ", "\t\n", "all( )", " all ( ) ", "(all())"])
@pytest.mark.parametrize("labels", [{}, {"a": "x"}, RR])
def test_all_and_empty_match_everything(expr, labels):
    assert parse(expr) == All()
    assert sel(expr, labels)


def test_not_all_matches_nothing():
    assert not any(sel("!all()", labels) for labels in LABEL_SETS)


# -- each operator, true and false, with absent labels ----------------------------------


@pytest.mark.parametrize("expr, labels, expected", [
    ("has(a)", {"a": "x"}, True),
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "x"}, False),
    ("has(a)", {}, False),
    ("has( a )", {"a": "x"}, True),
    ("!has(a)", {"a": "x"}, False),
    ("!has(a)", {}, True),
    ("!has(a)", {"b": "x"}, True),
    ("a == 'x'", {"a": "x"}, True),
    ("a == 'x'", {"a": "y"}, False),
    ("a == 'x'", {}, False),
    ("a == ''", {"a": ""}, True),
    ("a == ''", {}, False),
    ("a == 'X'", {"a": "x"}, False),
    ("a != 'x'", {"a": "x"}, False),
    ("a != 'x'", {"a": "y"}, True),
    ("a != 'x'", {}, True),
    ("a != ''", {"a": ""}, False),
    ("a in {'x', 'y'}", {"a": "x"}, True),
    ("a in {'x', 'y'}", {"a": "y"}, True),
    ("a in {'x', 'y'}", {"a": "z"}, False),
    ("a in {'x', 'y'}", {}, False),
    ("a in {'x'}", {"a": "x"}, True),
    ("a in {}", {"a": "x"}, False),
    ("a in {}", {}, False),
    ("a not in {'x', 'y'}", {"a": "x"}, False),
    ("a not in {'x', 'y'}", {"a": "y"}, False),
    ("a not in {'x', 'y'}", {"a": "z"}, True),
    ("a not in {'x', 'y'}", {}, True),
    ("a not in {}", {"a": "x"}, True),
    ("a not in {}", {}, True),
    ("a notin {'x'}", {"a": "x"}, False),  # Calico's `not\s*in` accepts this spelling
    ("a notin {'x'}", {}, True),
])
def test_operators(expr, labels, expected):
    assert sel(expr, labels) is expected


@pytest.mark.parametrize("expr, node", [
    ("has(a)", Has("a")),
    ("a == 'x'", Eq("a", "x")),
    ("a != 'x'", Ne("a", "x")),
    ("a in {'y', 'x', 'y'}", In("a", ("x", "y"))),
    ("a not in {'x'}", NotIn("a", ("x",))),
    ("a in {}", In("a", ())),
    ("!has(a)", Not(Has("a"))),
    ("!!has(a)", Has("a")),
    ("!!!has(a)", Not(Has("a"))),
    ("has(a) && has(b) && has(c)", And((Has("a"), Has("b"), Has("c")))),
    ("has(a) || has(b) || has(c)", Or((Has("a"), Has("b"), Has("c")))),
    ("has(a) && (has(b) && has(c))", And((Has("a"), Has("b"), Has("c")))),
    ("(has(a) || has(b)) || has(c)", Or((Has("a"), Has("b"), Has("c")))),
    ("has(a) || has(b) && has(c)", Or((Has("a"), And((Has("b"), Has("c")))))),
    ("!has(a) && has(b)", And((Not(Has("a")), Has("b")))),
    ("!(has(a) && has(b))", Not(And((Has("a"), Has("b"))))),
    ("!a == 'x'", Not(Eq("a", "x"))),
    ("((((has(a)))))", Has("a")),
])
def test_tree_shape(expr, node):
    assert parse(expr) == node


def test_in_values_are_a_set():
    assert In("a", ("y", "x", "x")) == In("a", ("x", "y"))
    assert parse("a in {'x', 'y'}") == parse("a in {'y','x'}")


def test_every_node_is_a_selector():
    for expr in ["all()", "has(a)", "a == 'x'", "a != 'x'", "a in {}", "a not in {}", "!has(a)",
                 "has(a) && has(b)", "has(a) || has(b)"]:
        assert isinstance(parse(expr), Selector)


# -- precedence, parentheses, nesting ---------------------------------------------------


@pytest.mark.parametrize("expr, equivalent", [
    # ! binds tighter than &&, && tighter than ||.
    ("has(a) || has(b) && has(c)", "has(a) || (has(b) && has(c))"),
    ("has(a) && has(b) || has(c)", "(has(a) && has(b)) || has(c)"),
    ("!has(a) && has(b)", "(!has(a)) && has(b)"),
    ("!has(a) || has(b)", "(!has(a)) || has(b)"),
    ("has(a) && !has(b) || !has(c) && has(b)", "(has(a) && (!has(b))) || ((!has(c)) && has(b))"),
    ("!a == 'x' && b == 'y'", "(!(a == 'x')) && b == 'y'"),
    ("a == 'x' || b == 'y' && c == 'x'", "a == 'x' || (b == 'y' && c == 'x')"),
])
def test_precedence(expr, equivalent):
    for labels in LABEL_SETS:
        assert sel(expr, labels) == sel(equivalent, labels), labels


@pytest.mark.parametrize("expr, labels, expected", [
    ("(has(a) || has(b)) && has(c)", {"a": "x"}, False),
    ("has(a) || has(b) && has(c)", {"a": "x"}, True),
    ("(has(a) || has(b)) && has(c)", {"b": "x", "c": "x"}, True),
    ("!(has(a) || has(b))", {}, True),
    ("!(has(a) || has(b))", {"b": "x"}, False),
    ("!has(a) || has(b)", {"a": "x"}, False),
    ("!(has(a) && has(b))", {"a": "x"}, True),
    ("!(has(a) && has(b))", {"a": "x", "b": "y"}, False),
    ("((a == 'x' && (b == 'y' || b == 'z')) || !(c in {'x'}))", {"a": "x", "b": "z", "c": "x"}, True),
    ("((a == 'x' && (b == 'y' || b == 'z')) || !(c in {'x'}))", {"a": "x", "b": "w", "c": "x"}, False),
    ("((a == 'x' && (b == 'y' || b == 'z')) || !(c in {'x'}))", {"a": "q"}, True),
    ("!(!(!(has(a))))", {"a": "x"}, False),
    ("!(!has(a))", {"a": "x"}, True),
])
def test_parentheses_and_nesting(expr, labels, expected):
    assert sel(expr, labels) is expected


def test_deep_nesting():
    expr = "(" * 50 + "has(a)" + ")" * 50
    assert parse(expr) == Has("a")


# -- quotes, whitespace and keys ----------------------------------------------------------


@pytest.mark.parametrize("expr", [
    "a == 'x'", 'a == "x"', "a=='x'", 'a=="x"', "  a  ==  'x'  ", "\ta\n==\r\n'x'\t",
    "a in {'x'}", 'a in {"x"}', "a in{'x'}", "a in {'x','y'}", "a in { 'x' , \"y\" }", "a in {'x',}",
])
def test_quotes_and_whitespace(expr):
    assert sel(expr, {"a": "x"})
    assert not sel(expr, {"a": "z"})


@pytest.mark.parametrize("expr, value", [
    ("a == \"it's\"", "it's"),
    ("a == 'say \"hi\"'", 'say "hi"'),
    ("a == 'x && y || !z'", "x && y || !z"),
    ("a == '(x)'", "(x)"),
    ("a == ' x '", " x "),
    ("a == 'a,b{c}'", "a,b{c}"),
    ("a == ''", ""),
])
def test_string_values_are_literal(expr, value):
    assert parse(expr) == Eq("a", value)


@pytest.mark.parametrize("key", [
    "projectcalico.org/zone", "kubernetes.io/hostname", "route-reflector", "a_b", "a.b", "a/b", "A9",
    "9lives", "topology.kubernetes.io/region", "-x", "has", "all", "in", "not",
])
def test_label_keys(key):
    assert sel(f"{key} == 'v'", {key: "v"})
    assert not sel(f"{key} == 'v'", {key + "x": "v"})
    assert sel(f"has({key})", {key: "v"})
    assert sel(f"{key} in {{'v'}}", {key: "v"})
    assert sel(f"{key} not in {{'v'}}", {})


@pytest.mark.parametrize("expr, expected", [
    ("route-reflector == 'true'", True),
    ("has(route-reflector)", True),
    ("projectcalico.org/zone in {'z1', 'z3'}", True),
    ("kubernetes.io/hostname != 'node-1'", False),
    ("route-reflector == 'true' && projectcalico.org/zone == 'z2'", False),
    ("!has(route-reflector) || kubernetes.io/hostname == 'node-1'", True),
])
def test_calico_style_keys(expr, expected):
    assert sel(expr, RR) is expected


def test_keywords_followed_by_paren_are_calls():
    assert parse("has(all)") == Has("all")
    assert parse("has (a)") == Has("a")
    assert parse("has == 'x'") == Eq("has", "x")
    assert parse("all == 'x'") == Eq("all", "x")


# -- str(): a canonical rendering that round trips --------------------------------------


@pytest.mark.parametrize("expr, canonical", [
    ("", "all()"),
    ("all( )", "all()"),
    ("route-reflector=='true'", "route-reflector == 'true'"),
    ('a == "x"', "a == 'x'"),
    ("a == \"it's\"", "a == \"it's\""),
    ("a!='x'", "a != 'x'"),
    ("has( a )", "has(a)"),
    ("!has(a)", "!has(a)"),
    ("!!has(a)", "has(a)"),
    ("!all()", "!all()"),
    ("!a == 'x'", "!(a == 'x')"),
    ("a in {'y','x','x'}", "a in {'x', 'y'}"),
    ("a not in {'x'}", "a not in {'x'}"),
    ("a notin {'x'}", "a not in {'x'}"),
    ("a in {}", "a in {}"),
    ("a not in { }", "a not in {}"),
    ("(has(a)) && ((has(b)))", "has(a) && has(b)"),
    ("has(a) && (has(b) && has(c))", "has(a) && has(b) && has(c)"),
    ("has(a) || (has(b) && has(c))", "has(a) || has(b) && has(c)"),
    ("(has(a) || has(b)) && has(c)", "(has(a) || has(b)) && has(c)"),
    ("!(has(a) || has(b))", "!(has(a) || has(b))"),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    ("!(a in {'x'})", "!(a in {'x'})"),
])
def test_canonical_str(expr, canonical):
    assert str(parse(expr)) == canonical


ROUND_TRIP = [
    "",
    "all()",
    "!all()",
    "has(a)",
    "!has(a)",
    "a == 'x'",
    "a != 'x'",
    "a == \"it's\"",
    "c == 'say \"hi\"'",
    "a in {'x', 'y'}",
    "a not in {'x', 'y'}",
    "a in {}",
    "a not in {}",
    "has(a) && b == 'y'",
    "has(a) || b == 'y' && !has(c)",
    "(has(a) || b == 'y') && !has(c)",
    "!(a == 'x' || b in {'x', 'y'})",
    "!(!(has(a) && !has(b)) || c not in {'x'})",
    "((a == 'x' && (b == 'y' || b == 'x')) || !(c in {'x'})) && a != ''",
    "route-reflector == 'true' || projectcalico.org/zone in {'z1'} && has(kubernetes.io/hostname)",
    "a_b == '1' && a.b == '2' && a-b == '3' && a/b == '4'",
]


@pytest.mark.parametrize("expr", ROUND_TRIP)
def test_str_round_trip(expr):
    original = parse(expr)
    again = parse(str(original))
    assert again == original
    assert str(again) == str(original)
    for labels in LABEL_SETS:
        assert again.matches(labels) == original.matches(labels), labels


def test_str_of_hand_built_trees_round_trips():
    trees = [
        And((Or((Has("a"), Has("b"))), Not(Or((Eq("a", "x"), In("b", ("y",))))))),
        Or((And((Has("a"), Or((Has("b"), Has("c"))))), Not(Not(Has("a"))))),
        Not(And((Ne("a", "x"), NotIn("b", ())))),
    ]
    for tree in trees:
        again = parse(str(tree))
        for labels in LABEL_SETS:
            assert again.matches(labels) == tree.matches(labels), (str(tree), labels)


def test_value_with_both_quotes_cannot_be_rendered():
    with pytest.raises(ValueError):
        str(Eq("a", "it's \"x\""))


# -- errors: position and what was expected -----------------------------------------------


@pytest.mark.parametrize("expr, pos, operator", [
    ("k =~ 'v'", 2, "=~"),
    ("k > 'v'", 2, ">"),
    ("k >= 'v'", 2, ">="),
    ("k < 'v'", 2, "<"),
    ("k = 'v'", 2, "="),
    ("k !~ 'v'", 2, "!~"),
    ("k ! 'v'", 2, "!"),
    ("k contains 'x'", 2, "contains"),
    ("k starts with 'x'", 2, "starts"),
    ("k endswith 'x'", 2, "endswith"),
    ("k is 'x'", 2, "is"),
    ("k=~'v'", 1, "=~"),
    ("has(a) && rr =~ 'true'", 13, "=~"),
    ("(a == 'x' || k ~ 'y')", 15, "~"),
])
def test_unknown_operator(expr, pos, operator):
    err = error(expr)
    assert err.pos == pos
    assert err.message == f"unknown operator '{operator}'; expected ==, !=, in, not in"
    assert err.expr == expr
    assert str(err) == f"{err.message} at position {pos} in selector {expr!r}"


@pytest.mark.parametrize("expr, pos, fragment", [
    # missing ')'
    ("(has(a)", 7, "unexpected end of selector; expected ')'"),
    ("(has(a) && has(b)", 17, "unexpected end of selector; expected ')'"),
    ("((has(a))", 9, "expected ')'"),
    ("(has(a) has(b))", 8, "expected ')' to close '(', got 'has'"),
    ("has(a", 5, "unexpected end of selector; expected ')' to close 'has('"),
    ("has(a b)", 6, "expected ')' to close 'has(', got 'b'"),
    ("all(", 4, "unexpected end of selector; expected ')' after 'all('"),
    ("all(a)", 4, "expected ')' after 'all(', got 'a'"),
    # has( without a key
    ("has(", 4, "unexpected end of selector; expected a label key after 'has('"),
    ("has()", 4, "expected a label key after 'has(', got ')'"),
    ("has('a')", 4, "expected a label key after 'has(', got \"'a'\""),
    ("!has( )", 6, "expected a label key after 'has(', got ')'"),
    # unterminated strings
    ("a == 'x", 5, "unterminated string; expected a closing \"'\""),
    ('a == "x', 5, "unterminated string; expected a closing '\"'"),
    ("a in {'x', 'y}", 11, "unterminated string"),
    ("a == 'x' && b == \"y'", 17, "unterminated string"),
    ("k =~ 'v", 2, "unknown operator '=~'"),  # the first error in the text wins
    # bare key, no operator
    ("k", 1, "unexpected end of selector after label key 'k'; expected ==, !=, in, not in"),
    ("  route-reflector  ", 19, "unexpected end of selector after label key 'route-reflector'; expected =="),
    ("k && has(a)", 2, "expected ==, !=, in, not in after label key 'k', got '&&'"),
    ("(k)", 2, "expected ==, !=, in, not in after label key 'k', got ')'"),
    ("k 'v'", 2, "expected ==, !=, in, not in after label key 'k', got \"'v'\""),
    ("has", 3, "unexpected end of selector after label key 'has'"),
    # missing or wrong values
    ("k ==", 4, "unexpected end of selector; expected a quoted string after '=='"),
    ("k != ", 5, "unexpected end of selector; expected a quoted string after '!='"),
    ("k == v", 5, "expected a quoted string after '==', got 'v'"),
    ("k == {'v'}", 5, "expected a quoted string after '==', got '{'"),
    # sets
    ("k in", 4, "unexpected end of selector; expected '{' after 'in'"),
    ("k in 'a'", 5, "expected '{' after 'in', got \"'a'\""),
    ("k in ('a')", 5, "expected '{' after 'in', got '('"),
    ("k not in 'a'", 9, "expected '{' after 'not in', got \"'a'\""),
    ("k in {", 6, "unexpected end of selector; expected a quoted string or '}' in the set"),
    ("k in {'a'", 9, "unexpected end of selector; expected ',' or '}' in the set"),
    ("k in {'a' 'b'}", 10, "expected ',' or '}' in the set, got \"'b'\""),
    ("k in {a}", 6, "expected a quoted string or '}' in the set, got 'a'"),
    ("k in {,}", 6, "expected a quoted string or '}' in the set, got ','"),
    ("k in {'a',,}", 10, "expected a quoted string or '}' in the set, got ','"),
    ("k not", 5, "unexpected end of selector; expected 'in' after 'not'"),
    ("k not {'a'}", 6, "expected 'in' after 'not', got '{'"),
    ("k not == 'a'", 6, "expected 'in' after 'not', got '=='"),
    # trailing tokens
    ("has(a) has(b)", 7, "unexpected 'has'; expected &&, || or end of selector"),
    ("a == 'x' b", 9, "unexpected 'b'; expected &&, || or end of selector"),
    ("has(a))", 6, "unexpected ')'; expected &&, || or end of selector"),
    ("all() all()", 6, "unexpected 'all'; expected &&, || or end of selector"),
    ("a == 'x' 'y'", 9, "unexpected \"'y'\"; expected &&, || or end of selector"),
    ("has(a) & has(b)", 7, "unexpected '&'; expected &&, || or end of selector"),
    ("has(a) | has(b)", 7, "unexpected '|'; expected &&, || or end of selector"),
    ("has(a) and has(b)", 7, "unexpected 'and'; expected &&, || or end of selector"),
    ("a in {} }", 8, "unexpected '}'; expected &&, || or end of selector"),
    # a term is missing
    ("has(a) &&", 9, "unexpected end of selector; expected a label key, has(, all(), ! or ("),
    ("has(a) ||  ", 11, "unexpected end of selector; expected a label key, has(, all(), ! or ("),
    ("!", 1, "unexpected end of selector; expected a label key, has(, all(), ! or ("),
    ("(", 1, "unexpected end of selector; expected a label key, has(, all(), ! or ("),
    ("()", 1, "unexpected ')'; expected a label key, has(, all(), ! or ("),
    ("&& has(a)", 0, "unexpected '&&'; expected a label key, has(, all(), ! or ("),
    ("has(a) && || has(b)", 10, "unexpected '||'; expected a label key, has(, all(), ! or ("),
    ("'a' == 'b'", 0, "unexpected \"'a'\"; expected a label key, has(, all(), ! or ("),
    ("== 'b'", 0, "unexpected '=='; expected a label key, has(, all(), ! or ("),
    ("~k == 'v'", 0, "unexpected '~'; expected a label key, has(, all(), ! or ("),
    ("{'a'}", 0, "unexpected '{'; expected a label key, has(, all(), ! or ("),
])
def test_errors(expr, pos, fragment):
    err = error(expr)
    assert (err.pos, fragment in err.message) == (pos, True), err.message
    assert err.expr == expr
    assert str(err) == f"{err.message} at position {pos} in selector {expr!r}"
    assert 0 <= err.pos <= len(expr)


def test_error_is_a_meshsim_error():
    from meshsim.errors import MeshsimError

    err = error("k =~ 'v'")
    assert isinstance(err, MeshsimError)
    assert "=~" in str(err) and "position 2" in str(err)

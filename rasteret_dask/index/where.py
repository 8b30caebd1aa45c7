"""A SQL ``WHERE`` condition as text -> a ``pyarrow.compute`` expression over the index's columns.

``collection.where("eo:cloud_cover < 20 AND platform = 'sentinel-2a'")`` and the command
line's ``--where`` take the condition DuckDB would take after ``WHERE``. DuckDB parses it
(``json_serialize_sql``: a syntax tree, nothing is executed, no table is read) and this module
turns the tree into an Arrow expression, so the condition is pushed into the scan like any
other filter (partition keys prune files, ``bbox_*`` bounds prune row groups).

Supported: ``AND``, ``OR``, ``NOT``, the six comparisons, ``[NOT] IN (values)``,
``[NOT] BETWEEN``, ``IS [NOT] NULL``, ``[NOT] LIKE`` / ``ILIKE``, column-to-column comparisons, nested struct fields (``bbox.xmin``), and literals (numbers,
strings, booleans, ``NULL``, ``DATE '...'`` / ``TIMESTAMP '...'``). A literal compared with a
column is converted to the column's type first, so a wrong type fails at once naming the
column; a ``datetime`` compared with ``'2024-03-01'`` means that instant in UTC. Column names
that are not SQL identifiers (``eo:cloud_cover``) may be written bare when the collection has
them (they are quoted before parsing, using DuckDB's tokenizer), or double-quoted. Anything
else (functions, subqueries, ``GROUP BY``, a second statement) is refused with a message that
names it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

__all__ = ["where_expression", "quote_columns", "syntax_tree", "to_expression"]

_PREFIX = "SELECT * FROM t WHERE "
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY_CLAUSES = ("modifiers", "group_expressions", "group_sets", "having", "qualify", "sample")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "COMPARE_EQUAL": lambda a, b: a == b,
    "COMPARE_NOTEQUAL": lambda a, b: a != b,
    "COMPARE_LESSTHAN": lambda a, b: a < b,
    "COMPARE_GREATERTHAN": lambda a, b: a > b,
    "COMPARE_LESSTHANOREQUALTO": lambda a, b: a <= b,
    "COMPARE_GREATERTHANOREQUALTO": lambda a, b: a >= b,
}
_LIKE = {"~~": (False, False), "!~~": (True, False), "~~*": (False, True), "!~~*": (True, True)}
_TIME_CASTS = {"DATE", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "DATETIME"}


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise ImportError("a text filter (where='...', --where) is parsed by DuckDB: "
                          "pip install duckdb") from exc
    return duckdb


def quote_columns(text: str, names: Sequence[str]) -> str:
    """``text`` with bare mentions of ``names`` that are not SQL identifiers double-quoted.

    A mention counts only where DuckDB's tokenizer starts an identifier and the name ends at
    a token boundary, so string literals, comments and quoted names are left alone.
    """
    special = sorted((n for n in names if not _IDENTIFIER.match(n)), key=len, reverse=True)
    if not special:
        return text
    tokens = _duckdb().tokenize(text)
    starts = {position for position, _ in tokens}
    identifiers = {position for position, kind in tokens if str(kind).endswith("identifier")}
    out, cursor = [], 0
    for position, _ in tokens:
        if position < cursor or position not in identifiers or text[position] == '"':
            continue
        for name in special:
            end = position + len(name)
            if text.startswith(name, position) and (end == len(text) or end in starts
                                                    or text[end].isspace()):
                out.append(text[cursor:position] + '"' + name.replace('"', '""') + '"')
                cursor = end
                break
    return "".join(out) + text[cursor:]


def syntax_tree(condition: str, shown: str | None = None) -> dict[str, Any]:
    """DuckDB's syntax tree of ``SELECT * FROM t WHERE <condition>``: the WHERE clause.

    ``shown`` is the condition as the user wrote it, for messages (default ``condition``).

    Raises
    ------
    ValueError
        For a syntax error (DuckDB's message), or text that is more than one condition.
    """
    duckdb = _duckdb()
    sql = _PREFIX + condition
    shown = condition if shown is None else shown
    with duckdb.connect() as own:  # never the caller's default connection
        answer = json.loads(own.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if answer.get("error"):
        message = str(answer.get("error_message"))
        if "Only SELECT" in message:  # a second statement after ';'
            message = "give one condition, as after WHERE"
        raise ValueError(f"invalid filter {shown!r}: {message}")
    statements = answer.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    extra = [k for k in _QUERY_CLAUSES if node.get(k)]
    source = node.get("from_table") or {}
    if (len(statements) != 1 or node.get("type") != "SELECT_NODE" or extra
            or source.get("table_name") != "t" or node.get("where_clause") is None):
        what = f" (it holds {', '.join(extra)})" if extra else ""
        raise ValueError(f"invalid filter {shown!r}: give one condition, as after "
                         f"WHERE{what}")
    return node["where_clause"]


@dataclass(frozen=True)
class _Column:
    """A column reference and its Arrow type."""

    path: tuple[str, ...]
    type: pa.DataType

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def field(self) -> ds.Expression:
        return ds.field(*self.path)


@dataclass(frozen=True)
class _Value:
    """A literal; ``time`` when written as DATE/TIMESTAMP (compared as a UTC instant)."""

    value: Any
    time: bool = False


def _literal(node: dict[str, Any]) -> Any:
    literal = node.get("literal")
    if literal is None:  # DuckDB < 1.3 wrote the value itself
        value = node.get("value", {})
        return None if value.get("is_null") else value.get("value")
    kind, text = literal.get("kind"), literal.get("text", "")
    if kind == "NULL_LITERAL":
        return None
    if kind == "BOOLEAN":
        return text.lower() == "true"
    if kind == "INTEGER":
        return int(text)
    if kind == "NUMERIC":
        return float(text)
    return text


def _instant(text: Any, condition: str) -> dt.datetime:
    if isinstance(text, dt.datetime):
        stamp = text
    else:
        try:
            stamp = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"invalid filter {condition!r}: {text!r} is not an ISO date or "
                             "time") from None
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


class _Translator:
    """One condition's tree -> expression, against one schema."""

    def __init__(self, schema: pa.Schema, condition: str) -> None:
        self.schema, self.condition = schema, condition

    def fail(self, what: str) -> ValueError:
        return ValueError(f"invalid filter {self.condition!r}: {what}")

    def column(self, path: Sequence[str]) -> _Column:
        names = self.schema.names
        if path[0] not in names:
            raise self.fail(f"unknown column {path[0]!r}; the collection's columns are "
                            f"{names}")
        kind = self.schema.field(path[0]).type
        for part in path[1:]:
            if not pa.types.is_struct(kind) or kind.get_field_index(part) < 0:
                raise self.fail(f"{'.'.join(path)!r}: {part!r} is not a field of {kind}")
            kind = kind.field(part).type
        return _Column(tuple(path), kind)

    def operand(self, node: dict[str, Any]) -> _Column | _Value:
        kind = node.get("class")
        if kind == "COLUMN_REF":
            return self.column(node["column_names"])
        if kind == "CONSTANT":
            return _Value(_literal(node))
        if kind == "CAST" and node.get("child", {}).get("class") == "CONSTANT":
            target = (node.get("type_expr") or {}).get("type_name") \
                or (node.get("cast_type") or {}).get("id", "")
            value = _literal(node["child"])
            if str(target).upper() in _TIME_CASTS:
                return _Value(_instant(value, self.condition), time=True)
            raise self.fail(f"casting to {target} is not supported (write the value as is)")
        raise self.fail(f"{self.describe(node)} is not a column or a value")

    def describe(self, node: dict[str, Any]) -> str:
        if node.get("class") == "FUNCTION":
            return f"the function {node.get('function_name')}()"
        if node.get("class") == "SUBQUERY":
            return "a subquery"
        return f"{node.get('class', '?').lower()} {node.get('type', '')}".strip()

    def typed(self, value: _Value, column: _Column) -> Any:
        """``value`` as a scalar of ``column``'s type (its own type against a column)."""
        if value.value is None:
            return None
        target = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_timestamp(target) or pa.types.is_date(target):
            stamp = _instant(value.value, self.condition)
            if pa.types.is_date(target):
                return pa.scalar(stamp.date(), type=target)
            if target.tz is None:
                stamp = stamp.replace(tzinfo=None)
            return pa.scalar(stamp, type=target)
        if value.time:
            raise self.fail(f"column {column.name!r} is {column.type}, not a date or time")
        try:
            return pa.array([value.value], type=target)[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            raise self.fail(f"{value.value!r} does not match column {column.name!r} of type "
                            f"{column.type}") from None

    def pair(self, left: dict[str, Any], right: dict[str, Any]) -> tuple[Any, Any]:
        a, b = self.operand(left), self.operand(right)
        if isinstance(a, _Column) and isinstance(b, _Column):
            return a.field, b.field
        if isinstance(a, _Column):
            return a.field, self.typed(b, a)
        if isinstance(b, _Column):
            return self.typed(a, b), b.field
        raise self.fail("a comparison needs a column on one side")

    def expression(self, node: dict[str, Any]) -> ds.Expression:
        kind, op = node.get("class"), node.get("type")
        if kind == "CONJUNCTION":
            parts = [self.expression(child) for child in node["children"]]
            combined = parts[0]
            for part in parts[1:]:
                combined = combined & part if op == "CONJUNCTION_AND" else combined | part
            return combined
        if kind == "COMPARISON" and op in _COMPARE:
            return _COMPARE[op](*self.pair(node["left"], node["right"]))
        if kind == "BETWEEN":
            low, high = node["lower"], node["upper"]
            column = node["input"]
            lower = _COMPARE["COMPARE_GREATERTHANOREQUALTO"](*self.pair(column, low))
            return lower & _COMPARE["COMPARE_LESSTHANOREQUALTO"](*self.pair(column, high))
        if kind == "OPERATOR":
            return self.operator(node, op)
        if kind == "FUNCTION" and node.get("function_name") in _LIKE:
            return self.like(node)
        if kind == "COLUMN_REF":
            column = self.column(node["column_names"])
            if not pa.types.is_boolean(column.type):
                raise self.fail(f"column {column.name!r} is {column.type}, not a condition")
            return column.field
        raise self.fail(f"{self.describe(node)} is not supported here")

    def operator(self, node: dict[str, Any], op: str) -> ds.Expression:
        children = node["children"]
        if op == "OPERATOR_NOT":
            return ~self.expression(children[0])
        if op in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
            target = self.operand(children[0])
            if not isinstance(target, _Column):
                raise self.fail("IS NULL needs a column")
            test = target.field.is_null()
            return test if op == "OPERATOR_IS_NULL" else ~test
        if op in ("COMPARE_IN", "COMPARE_NOT_IN"):
            target = self.operand(children[0])
            if not isinstance(target, _Column):
                raise self.fail("IN needs a column on its left")
            values = [self.operand(child) for child in children[1:]]
            if any(isinstance(v, _Column) for v in values):
                raise self.fail("IN takes a list of values")
            scalars = [self.typed(v, target) for v in values]
            kind = target.type.value_type if pa.types.is_dictionary(target.type) else target.type
            value_set = pa.array([s.as_py() for s in scalars if s is not None], type=kind)
            test = pc.is_in(target.field, value_set=value_set)
            return test if op == "COMPARE_IN" else ~test
        raise self.fail(f"{self.describe(node)} is not supported here")

    def like(self, node: dict[str, Any]) -> ds.Expression:
        negate, ignore_case = _LIKE[node["function_name"]]
        target, pattern = (self.operand(a["expression"]) for a in node["arguments"])
        if not isinstance(target, _Column) or not isinstance(pattern, _Value) \
                or not isinstance(pattern.value, str):
            raise self.fail("LIKE needs a column on its left and a text pattern on its right")
        test = pc.match_like(target.field, pattern=pattern.value, ignore_case=ignore_case)
        return ~test if negate else test


def to_expression(tree: dict[str, Any], schema: pa.Schema, condition: str = "") -> ds.Expression:
    """The Arrow expression of a WHERE clause's syntax tree (:func:`syntax_tree`), its columns
    and literals checked against ``schema``."""
    return _Translator(schema, condition).expression(tree)


def where_expression(condition: str, schema: pa.Schema) -> ds.Expression:
    """``condition`` (SQL, as after ``WHERE``) as an Arrow expression over ``schema``.

    Parameters
    ----------
    condition : str
        E.g. ``"eo:cloud_cover < 20 AND platform = 'sentinel-2a'"``.
    schema : pyarrow.Schema
        The collection's columns (names are checked, literals converted to their types).

    Returns
    -------
    pyarrow.dataset.Expression

    Raises
    ------
    ValueError
        For a syntax error, an unknown column, a value of the wrong type, or what the module
        docstring lists as unsupported; the message quotes the condition.
    ImportError
        When DuckDB (the parser) is not installed.
    """
    if not isinstance(condition, str) or not condition.strip():
        raise ValueError(f"invalid filter {condition!r}: give a condition such as "
                         "\"eo:cloud_cover < 20\"")
    quoted = quote_columns(condition, schema.names)
    return to_expression(syntax_tree(quoted, condition), schema, condition)

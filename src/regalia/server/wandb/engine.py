"""The GraphQL engine behind ``POST /graphql``: graphql-core, with the leniency
the `wandb` client needs.

The schema is the SDL in ``schema/*.graphql`` (``base.graphql`` first, the
others ``extend`` it); introspection answers from it, so it says exactly what
Regalia answers. W&B's own schema is private and every client release asks
for a few fields more, so the engine decides what a field the SDL does not
declare gets (tested across client versions in ``tests/test_wandb_client.py``):

* a field not declared on a type Regalia knows is answered ``null`` (never an
  error that fails the whole request), and logged once per field so that an
  operator sees what a newer client asked for;
* an argument not declared on a field is ignored;
* a field of an input object (in the variables) that the SDL does not declare
  is dropped before coercion;
* an unknown *type* (an unknown input type of a variable, an unknown type
  condition) is still an error: there is nothing sensible to coerce it to.

Everything else is graphql-core's standard validation and execution.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute,
    parse,
    specified_rules,
    type_from_ast,
    validate,
)
from graphql.execution.executor import Executor
from graphql.validation import FieldsOnCorrectTypeRule, KnownArgumentNamesRule

from regalia.core.limits import MAX_GRAPHQL_FIELDS, MAX_GRAPHQL_TOKENS
from regalia.errors import InvalidRequest, RegaliaError
from regalia.server.wandb.resolvers import MUTATION, QUERY, WandbContext

log = logging.getLogger("regalia.wandb")

# Standard validation but for the two rules that undeclared fields and
# arguments would break (they are answered null / ignored instead).
RULES = tuple(
    r for r in specified_rules if r not in (FieldsOnCorrectTypeRule, KnownArgumentNamesRule)
)

_said: set[str] = set()


@cache
def schema() -> GraphQLSchema:
    """The SDL Regalia answers (built once): ``base.graphql``, then the rest in name order."""
    folder = files(__package__).joinpath("schema")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".graphql"))
    names.sort(key=lambda n: n != "base.graphql")
    return build_schema("\n".join(folder.joinpath(n).read_text("utf-8") for n in names))


def warm_up() -> None:
    """Build the schema and validate a query once, so that the first request
    of a `wandb` client after the server starts does not pay for it (~0.3 s)."""
    validate(schema(), parse("{ serverInfo { features { name isEnabled } } }"), RULES)


class LenientExecutor(Executor[Any]):
    """graphql-core's executor, answering ``null`` for a field the SDL lacks."""

    def execute_field(
        self,
        parent_type: Any,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        name = field_details_list[0].node.name.value
        if self.schema.get_field(parent_type, name) is None:
            where = f"{parent_type.name}.{name}"
            ctx = self.context_value
            if isinstance(ctx, WandbContext):
                ctx.undeclared.append(where)
            if where not in _said:
                _said.add(where)
                log.info("wandb client asked for %s, which Regalia does not declare: null", where)
            return None
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


def _prune(value: Any, type_: Any, dropped: list[str]) -> Any:
    """``value`` without the input-object fields ``type_`` does not declare."""
    if isinstance(type_, GraphQLNonNull):
        return _prune(value, type_.of_type, dropped)
    if isinstance(type_, GraphQLList):
        if isinstance(value, list):
            return [_prune(v, type_.of_type, dropped) for v in value]
        return _prune(value, type_.of_type, dropped)
    if isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
        out = {}
        for key, v in value.items():
            f = type_.fields.get(key)
            if f is None:
                dropped.append(f"{type_.name}.{key}")
                continue
            out[key] = _prune(v, f.type, dropped)
        return out
    return value


def prune_variables(
    document: Any, operation: str | None, variables: dict[str, Any]
) -> dict[str, Any]:
    """The variables with undeclared input fields dropped (see the module's rules)."""
    out = dict(variables)
    dropped: list[str] = []
    for d in document.definitions:
        if not isinstance(d, OperationDefinitionNode):
            continue
        if operation is not None and (d.name is None or d.name.value != operation):
            continue
        for vd in d.variable_definitions or ():
            name = vd.variable.name.value
            type_ = type_from_ast(schema(), vd.type)
            if name in out and type_ is not None:
                out[name] = _prune(out[name], type_, dropped)
    for where in dropped:
        if where not in _said:
            _said.add(where)
            log.info(
                "wandb client sent input field %s, which Regalia does not declare: dropped", where
            )
    return out


class FieldBudget:
    """graphql-core middleware: refuses the fields after the first
    :data:`MAX_GRAPHQL_FIELDS` of one request (their parents become null, so
    the rest of the query is cut off at once)."""

    def __init__(self) -> None:
        self.used = 0

    @property
    def spent(self) -> bool:
        return self.used > MAX_GRAPHQL_FIELDS

    def resolve(self, next_: Any, root_value: Any, info: Any, **args: Any) -> Any:
        self.used += 1
        if self.spent:
            raise GraphQLError("field budget spent")
        return next_(root_value, info, **args)


def _type_of(value: Any, info: Any, abstract_type: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("__typename")
        return name if isinstance(name, str) else None
    return None


def run_query(
    ctx: WandbContext, query: str, variables: dict[str, Any] | None, operation: str | None
) -> tuple[dict[str, Any], RegaliaError | None]:
    """The GraphQL answer to one request (``{"data", "errors"}``), and the
    Regalia error that failed it, if one did (its status becomes the response's).

    Raises:
        InvalidRequest: the query is past a limit of :mod:`regalia.core.limits`.
    """
    try:
        document = parse(query, max_tokens=MAX_GRAPHQL_TOKENS)
    except GraphQLError as exc:
        if "tokens" in exc.message:
            raise InvalidRequest(
                f"the GraphQL query has more than {MAX_GRAPHQL_TOKENS} tokens",
                limit="graphql_tokens",
                maximum=MAX_GRAPHQL_TOKENS,
            ) from None
        return dict(ExecutionResult(None, [exc]).formatted), None
    problems = validate(schema(), document, RULES)
    if problems:
        return dict(ExecutionResult(None, problems).formatted), None
    if variables:
        variables = prune_variables(document, operation, variables)
    budget = FieldBudget()
    result = execute(
        schema(),
        document,
        root_value={**QUERY, **MUTATION},
        context_value=ctx,
        variable_values=variables,
        operation_name=operation,
        type_resolver=_type_of,
        middleware=[budget],
        executor_class=LenientExecutor,
    )
    assert isinstance(result, ExecutionResult)  # every resolver here is synchronous
    if budget.spent:
        raise InvalidRequest(
            f"the GraphQL query resolves more than {MAX_GRAPHQL_FIELDS} fields",
            limit="graphql_fields",
            maximum=MAX_GRAPHQL_FIELDS,
        )
    answer: dict[str, Any] = {"data": result.data}
    cause: RegaliaError | None = None
    if result.errors:
        errors: list[dict[str, Any]] = []
        for e in result.errors:
            original = e.original_error
            if isinstance(original, RegaliaError):
                cause = cause or original
                errors.append(
                    {
                        "message": original.message,
                        "path": e.path,
                        "extensions": {"code": original.code, **original.details},
                    }
                )
            else:
                # A bug, not a state of the registry: logged, and answered with
                # status 200 so that the client reports it instead of retrying.
                if original is not None and not isinstance(original, GraphQLError):
                    log.error("wandb GraphQL resolver failed", exc_info=original)
                errors.append(dict(e.formatted))
        answer["errors"] = errors
    return answer, cause

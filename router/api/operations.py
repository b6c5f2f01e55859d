"""How the API document describes a handler, declared on the handler itself (`@documented`), so
that an operation's route, body type, answers and description live in one place; the document
(router/api/openapi.py) reads them from the route table. Its roles come from the authorization
rule (router/api/auth.py), its tag from the path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

H = TypeVar("H", bound=Callable[..., object])

ATTRIBUTE = "__operation__"
INTERACTION = {200: ("The interaction.", "Interaction")}
"""The answer of most interaction operations: the interaction as GET shows it."""


@dataclass(frozen=True)
class Operation:
    """An operation of the document: its id, summary, answers (status -> description and the
    component of the view, None for no content), the problems it may answer besides those every
    operation may, its body type and query or header parameters (component names)."""

    op_id: str
    summary: str
    answers: Mapping[int, tuple[str, str | None]] = field(default_factory=lambda: INTERACTION)
    problems: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    params: tuple[str, ...] = ()
    description: str | None = None


def documented(
    op_id: str,
    summary: str,
    answers: Mapping[int, tuple[str, str | None]] = INTERACTION,
    problems: tuple[int, ...] = (),
    *,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    params: tuple[str, ...] = (),
    description: str | None = None,
) -> Callable[[H], H]:
    """Declare how the document describes the handler it decorates."""
    operation = Operation(
        op_id, summary, answers, problems, body, body_required, params, description
    )

    def mark(handler: H) -> H:
        setattr(handler, ATTRIBUTE, operation)
        return handler

    return mark


def operation_of(handler: object) -> Operation | None:
    """The operation a handler declares, if any."""
    found = getattr(handler, ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None

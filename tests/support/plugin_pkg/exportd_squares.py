"""A third-party exporter, as docs/how-to/custom-exporter.md builds it."""

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field

from exportd.errors import PermanentError, RetryableError
from exportd.exporters import ExportContext, exporter


class SquaresParams(BaseModel):
    rows: int = Field(default=100, ge=0, le=10_000_000)
    fail: Literal["permanent", "retryable"] | None = None


@exporter("squares", params=SquaresParams)
def squares(params: SquaresParams, ctx: ExportContext) -> Iterator[list[dict[str, int]]]:
    """Numbers and their squares."""
    if params.fail == "permanent":
        raise PermanentError("squares cannot do that", code="no_squares")
    if params.fail == "retryable":
        raise RetryableError("the squares service is busy", code="busy")
    ctx.set_total(params.rows)
    ctx.step("squaring")
    for start in range(0, params.rows, 1000):
        ctx.checkpoint()
        yield [{"n": n, "square": n * n} for n in range(start, min(start + 1000, params.rows))]

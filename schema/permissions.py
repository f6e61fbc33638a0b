"""Who may call a field: admins only, refused with FORBIDDEN for everyone else."""

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from resolvers.errors import ForbiddenError
from schema.context import Context


class IsAdmin(BasePermission):
    message = "this field is for administrators"

    def has_permission(
        self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any
    ) -> bool:
        return info.context.actor.is_admin

    def on_unauthorized(self) -> None:
        """Refuse with the domain's FORBIDDEN error, like every other code (schema/errors.py)."""
        raise ForbiddenError(self.message)


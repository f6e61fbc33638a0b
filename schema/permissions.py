"""Who may call a field: admins only, refused with FORBIDDEN for everyone else."""

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from schema.context import Context


class IsAdmin(BasePermission):
    message = "this field is for administrators"
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 (strawberry reads it as a class attribute)

    def has_permission(
        self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any
    ) -> bool:
        return info.context.actor.is_admin

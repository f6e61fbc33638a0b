"""What the admin console reads: the render queue, the GC audit page by page, and what a
delete stage would remove; and every user's own tokens (create, revoke)."""

from datetime import datetime, timedelta
from typing import Annotated

import strawberry

from models.states import RenderKind
from resolvers import admin, gc_policy, ids, users
from resolvers.gc_files import ARCHIVED
from schema.errors import NotFound
from schema.permissions import IsAdmin
from schema.types import ApiToken, Connection, Edge, Info, PageInfo, Render


@strawberry.type(description="The queue of one render kind.")
class RenderKindFigures:
    kind: RenderKind
    queued: int
    running: int
    done_last_day: int
    failed_last_day: int
    average_seconds: float | None = strawberry.field(
        description="Over the latest 100 finished renders of this kind; null before any."
    )


@strawberry.type(description="What the workers have to do, and how it went lately.")
class RenderQueue:
    kinds: list[RenderKindFigures]

    @strawberry.field(description="The latest failed renders, newest first, with their reasons.")
    async def recent_failures(self, info: Info, first: int = 20) -> list[Render]:
        rows = await admin.recent_failures(db=info.context.db, first=first)
        return [Render.from_row(r) for r in rows]


@strawberry.type(description="One thing a GC action changed, and who did it.")
class GcAuditEntry:
    id: strawberry.ID
    at: datetime
    action: str
    actor: str | None = strawberry.field(
        description="The admin's name, or who started the run (the CLI's --actor, cron)."
    )
    run_id: strawberry.ID | None
    export_id: strawberry.ID | None
    blob_sha256: str | None
    bytes: float


@strawberry.type(description="What gcDelete would remove from the archive now (a dry run).")
class GcArchiveDue:
    count: int
    bytes: float


@strawberry.type
class AdminQuery:
    @strawberry.field(permission_classes=[IsAdmin], description="The render queue (admin only).")
    async def render_queue(self, info: Info) -> RenderQueue:
        figures = await admin.render_queue(db=info.context.db)
        return RenderQueue(
            kinds=[
                RenderKindFigures(
                    kind=f.kind,
                    queued=f.queued,
                    running=f.running,
                    done_last_day=f.done_last_day,
                    failed_last_day=f.failed_last_day,
                    average_seconds=f.average_seconds,
                )
                for f in figures
            ]
        )

    @strawberry.field(
        permission_classes=[IsAdmin], description="The GC audit, newest first (admin only)."
    )
    async def gc_audit(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[GcAuditEntry]:
        page = await admin.audit(db=info.context.db, first=first, after=after)
        edges = []
        for cursor, (entry, name) in page.items:
            assert entry.id is not None
            node = GcAuditEntry(
                id=strawberry.ID(str(entry.id)),
                at=entry.at,
                action=entry.action,
                actor=name,
                run_id=strawberry.ID(str(entry.run_id)) if entry.run_id is not None else None,
                export_id=(
                    strawberry.ID(ids.encode("Export", entry.export_id))
                    if entry.export_id is not None
                    else None
                ),
                blob_sha256=entry.blob_sha256,
                bytes=float(entry.bytes),
            )
            edges.append(Edge(cursor=cursor, node=node))
        return Connection(
            edges=edges, page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor)
        )

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Archived exports gcDelete would remove now (admin only; a dry run).",
    )
    async def gc_archive_due(self, info: Info, days_in_archive: int = 30) -> GcArchiveDue:
        gc_policy.check_days(daysInArchive=days_in_archive)
        due = await gc_policy.in_state(
            db=info.context.db, state=ARCHIVED, older_than=timedelta(days=days_in_archive)
        )
        return GcArchiveDue(count=len(due), bytes=float(sum(size for _, size in due)))


@strawberry.type(description="A new token of yours; shown this once.")
class TokenCreated:
    token: str
    api_token: ApiToken


@strawberry.type
class TokenRevoked:
    id: strawberry.ID


RevokeTokenResult = Annotated[TokenRevoked | NotFound, strawberry.union("RevokeTokenResult")]


@strawberry.type
class AccountMutation:
    @strawberry.mutation(description="Another token for your own account (a device, a script).")
    async def create_token(self, info: Info, label: str = "") -> TokenCreated:
        actor = info.context.actor
        row, token = await users.create_token(db=info.context.db, user_id=actor.id, label=label)
        return TokenCreated(token=token, api_token=ApiToken.from_row(row, actor.token_id))

    @strawberry.mutation(
        description="Revoke one of your tokens (an admin: anyone's); requests with it are "
        "refused from then on."
    )
    async def revoke_token(self, info: Info, id: strawberry.ID) -> RevokeTokenResult:
        await users.revoke_token(
            db=info.context.db, actor=info.context.actor, token_id=ids.decode(id, "ApiToken")
        )
        return TokenRevoked(id=id)

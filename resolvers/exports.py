"""What an owner does with their exports: pin one to keep it forever, or unpin it."""

from sqlmodel import select

from models.db import Database
from models.store import MediaStore
from models.tables import Export, GcAudit, Project
from resolvers import ids
from resolvers.errors import NotFoundError
from resolvers.gc import restore
from resolvers.gc_files import ARCHIVED, DELETED, MARKED, NONE
from resolvers.users import Actor


async def set_pinned(
    *, db: Database, store: MediaStore, actor: Actor, project_id: int, version: int, pinned: bool
) -> Export:
    """Pin or unpin an export of the actor's; pinning an archived one restores it first.
    An export of a deleted project can still be unpinned (never pinned again)."""
    for _ in range(3):
        async with db.write() as session:
            project = await session.get(Project, project_id)
            export = (
                await session.exec(
                    select(Export)
                    .where(Export.project_id == project_id, Export.version == version)
                    .with_for_update()
                )
            ).first()
            # A deleted project's pinned exports stay until their owner unpins them.
            mine = project is not None and project.owner_id == actor.id
            if not mine or export is None or (pinned and project and project.deleted_at):
                raise NotFoundError(
                    f"Export of version {version} of project", ids.encode("Project", project_id)
                )
            if export.gc_state == DELETED:
                raise NotFoundError(
                    f"Export of version {version} of project", ids.encode("Project", project_id)
                )
            if not (pinned and export.gc_state == ARCHIVED):
                export.pinned = pinned
                if pinned and export.gc_state == MARKED:
                    export.gc_state, export.marked_at = NONE, None  # a pin takes a mark back
                session.add(export)
                session.add(
                    GcAudit(
                        actor_id=actor.id, action="pin" if pinned else "unpin", export_id=export.id
                    )
                )
                return export
        assert export.id is not None
        try:
            await restore(db=db, store=store, actor=actor, export_id=export.id)
        except NotFoundError:
            continue  # restored or deleted meanwhile: look again
    raise NotFoundError(
        f"Export of version {version} of project", ids.encode("Project", project_id)
    )

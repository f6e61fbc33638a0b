"""Run every benchmark: `make bench` or `python -m bench`."""

import asyncio

from bench import (
    append_ops,
    bucket,
    events,
    gc,
    gc_load,
    imports,
    previews,
    render,
    subscriber_memory,
    upload,
)

if __name__ == "__main__":
    append_ops.main()
    upload.main()
    asyncio.run(render.main())
    asyncio.run(previews.main())
    asyncio.run(events.main())
    subscriber_memory.main()
    asyncio.run(gc.main())
    gc_load.main()
    asyncio.run(bucket.main())
    asyncio.run(imports.main())

"""Run ingest in its own process; with `--die-before-commit` the process SIGKILLs itself
right after its first ClickHouse insert and before committing offsets (a crash at the worst
moment). `--count` prints the rows stored in a chdb directory."""

import argparse
import asyncio
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--die-before-commit", action="store_true")
    parser.add_argument("--count", action="store_true")
    args = parser.parse_args()
    if args.count:
        from logpipe.ingest.settings import Settings
        from logpipe.stores.clickhouse import ClickHouseStore

        settings = Settings()
        store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        total, distinct = store.query(f"SELECT count(), uniqExact(record_id) FROM {store.table('logs')}")[0]
        print(total, distinct)
        return
    if args.die_before_commit:
        from logpipe.core.consumer import BatchConsumer

        async def die(self, offsets):
            os.kill(os.getpid(), signal.SIGKILL)

        BatchConsumer._commit = die
    from logpipe.cli import main as cli

    cli(["run", "ingest"])


if __name__ == "__main__":
    sys.exit(main())

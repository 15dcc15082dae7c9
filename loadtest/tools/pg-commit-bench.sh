#!/usr/bin/env bash
# Durable commits per second per Postgres (docs/capacity.md): pgbench against the machine's
# Postgres (PGURL, default postgres://postgres@127.0.0.1:5432) in a database of its own, created
# here and dropped on exit. Each transaction inserts what a send commits: one 128-byte message
# row into a table shaped like `messages` (one commit per message), or a batch of 10 (one group
# commit, D35/D40). synchronous_commit stays on: every commit waits for its WAL flush.
#   loadtest/tools/pg-commit-bench.sh [seconds per run]
set -euo pipefail
T=${1:-10}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DB=sb_capacity_$$_$RANDOM
DIR=$(mktemp -d /tmp/sb-pgbench.XXXXXX)
cleanup() {
  psql -q "$PGURL/postgres" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
psql -q "$PGURL/postgres" -c "create database $DB"
psql -q "$PGURL/$DB" <<'SQL'
create table messages (
  id bigserial primary key,
  room_id text not null,
  seq bigint not null,
  user_id text not null,
  client_msg_id text,
  body text not null,
  created_at timestamptz not null default now(),
  unique (room_id, seq),
  unique (room_id, user_id, client_msg_id)
);
SQL
cat >"$DIR/one.sql" <<'SQL'
\set room random(1, 10000)
insert into messages (room_id, seq, user_id, client_msg_id, body) values ('room-' || :room, nextval('messages_id_seq'), 'u' || :client_id, md5(random()::text), repeat('x', 128));
SQL
cat >"$DIR/batch.sql" <<'SQL'
\set room random(1, 10000)
insert into messages (room_id, seq, user_id, client_msg_id, body)
  select 'room-' || :room, nextval('messages_id_seq'), 'u' || :client_id, md5(random()::text), repeat('x', 128) from generate_series(1, 10);
SQL
echo "pgbench $(pgbench --version | awk '{print $3}') on $(psql -tA "$PGURL/$DB" -c 'select version()' | cut -d, -f1); fsync=$(psql -tA "$PGURL/$DB" -c 'show fsync'), synchronous_commit=$(psql -tA "$PGURL/$DB" -c 'show synchronous_commit'), wal_sync_method=$(psql -tA "$PGURL/$DB" -c 'show wal_sync_method'); $T s per run; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for spec in "one 1" "one 8" "one 32" "batch 8"; do
  set -- $spec
  tps=$(pgbench -n -T "$T" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -f "$DIR/$1.sql" "$PGURL/$DB" 2>&1 | awk '/^tps/ {print $3}')
  rows=$([ "$1" = batch ] && echo 10 || echo 1)
  printf '%-38s %3s clients: %9.0f commits/s = %9.0f messages/s\n' "$([ "$1" = batch ] && echo 'group commit of 10 messages' || echo 'one message per commit')" "$2" "$tps" "$(echo "$tps * $rows" | bc)"
done

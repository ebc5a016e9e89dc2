-- Creates the partitions of `table` that hold these times, unless they exist (migration 0008's
-- telemetry_partition_ensure); in time order, so two workers wait on each other's in one order.
SELECT telemetry_partition_ensure(%(table)s, t.at)
FROM unnest(%(times)s::timestamptz[]) AS t(at)
ORDER BY t.at

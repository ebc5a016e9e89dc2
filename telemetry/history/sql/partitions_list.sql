-- The partitions of `table`, each with its range: [lower, upper).
SELECT c.relname,
       lower(bounds.range), upper(bounds.range)
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (
    SELECT tstzrange((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'))[1]::timestamptz,
                     (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'))[2]::timestamptz) AS range
) AS bounds
WHERE i.inhparent = %(table)s::regclass
ORDER BY 2

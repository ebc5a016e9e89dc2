-- Serialises packing and unpacking of these devices until the transaction ends: a transaction-level
-- advisory lock per device, taken in id order (namespace: this feature's lock class).
SELECT count(pg_advisory_xact_lock(%(namespace)s, g.id::integer))
FROM (SELECT DISTINCT unnest(%(ids)s::bigint[]) AS id ORDER BY 1) AS g

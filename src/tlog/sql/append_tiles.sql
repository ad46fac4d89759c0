INSERT INTO log_tiles (level, n, width, data)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::int[], $4::bytea[])
ON CONFLICT (level, n) DO UPDATE SET width = EXCLUDED.width, data = EXCLUDED.data
WHERE log_tiles.width < EXCLUDED.width

INSERT INTO pull_log (at, repository, reference, digest, media_type, method, status,
                      identity, verified, remote_addr, user_agent, request_id)
SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::int2[], $8::text[], $9::bool[], $10::text[], $11::text[], $12::text[])

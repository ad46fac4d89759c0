SELECT d, (SELECT p.at FROM pull_log p
           WHERE p.digest = d AND p.repository = $1 AND p.status BETWEEN 200 AND 299
           ORDER BY p.at DESC LIMIT 1)
FROM unnest($2::text[]) AS u(d)

INSERT INTO log_cosignatures (size, witness, cosigned_at, line) VALUES ($1, $2, $3, $4)
ON CONFLICT (size, witness) DO NOTHING

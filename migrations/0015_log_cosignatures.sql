-- Witness cosignatures (C2SP tlog-cosignature) of signed checkpoints, each verified
-- against the witness's configured key before it is stored. `/log/checkpoint` serves
-- the newest checkpoint with these lines appended, as one signed note.
CREATE TABLE log_cosignatures (
    size        bigint      NOT NULL,
    witness     text        NOT NULL,
    cosigned_at bigint      NOT NULL,
    line        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);

-- Signature and referrer tags become 'append_only' by default: a new manifest under
-- such a tag must keep every descriptor the previous one listed. Bindings made while
-- they were 'exempt' keep that stored class until their next write.

ALTER TABLE tag_bindings DROP CONSTRAINT tag_bindings_class_check;
ALTER TABLE tag_bindings ADD CONSTRAINT tag_bindings_class_check
    CHECK (class IN ('immutable', 'moving', 'exempt', 'append_only'));


//! Property tests and fuzzing of the parsers, the policy and the transparency log's
//! tree: pure functions of the library, with nothing running and no harness.

mod fuzz_parsing;
mod parsing_props;
mod tlog_props;

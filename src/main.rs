fn main() -> std::process::ExitCode {
    tagwarden::cli::run()
}

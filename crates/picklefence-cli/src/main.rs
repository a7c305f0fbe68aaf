fn main() {
    std::process::exit(picklefence_cli::run(std::env::args_os()));
}

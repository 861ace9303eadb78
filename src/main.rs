fn main() {
    std::process::exit(goldenfs::cli::main());
}

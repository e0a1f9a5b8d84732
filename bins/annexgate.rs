fn main() {
    annexgate::logging::init();
}

// tests/fuzz/ubsan_options.cc — linked into every fuzz target.
//
// UBSan findings are crashes too: without this clang's UBSan reports and
// goes on, and libFuzzer would never save the input.
extern "C" __attribute__((used)) const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

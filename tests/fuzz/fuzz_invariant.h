// What a fuzz target calls when an input breaks a property beyond "no
// crash": it says which property and on what, then aborts, which the fuzzer
// (or the corpus replay) reports as a finding with the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace kiln::fuzzing {

[[noreturn]] inline void broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s\n%s\n", what, detail.c_str());
  std::abort();
}

}  // namespace kiln::fuzzing

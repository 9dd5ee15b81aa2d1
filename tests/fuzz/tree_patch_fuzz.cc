// Fuzzes the kiln patch reader. Beyond "no crash": whatever parses writes
// back to a text that parses to the same patch.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "formats/tree/tree_patch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto patch = kiln::parse_tree_patch(text, "fuzz.patch");
  if (!patch) return 0;
  std::string written = kiln::write_tree_patch(*patch);
  auto reread = kiln::parse_tree_patch(written, "written.patch");
  if (!reread || reread->entries != patch->entries || reread->comments != patch->comments) {
    std::fprintf(stderr, "the written patch does not read back the same:\n%s\n%s\n", written.c_str(),
                 reread ? "(different patch)" : reread.error().to_string().c_str());
    std::abort();
  }
  return 0;
}

// Fuzzes the domain container reader. Beyond "no crash": whatever parses
// has a stripped config that reads, as a Xen config, to the same domain,
// and expressions whose kinds are the table's.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "container/vm_container.h"
#include "formats/domain/xen_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto file = kiln::parse_container_file(text, "fuzz.domain");
  if (!file) {
    if (file.error().kind != kiln::ErrorKind::kBadInput || file.error().message.empty()) {
      std::fprintf(stderr, "a refusal that is not a bad-input error: %s\n", file.error().to_string().c_str());
      std::abort();
    }
    return 0;
  }
  auto stripped = kiln::parse_xen_config(file->stripped, "fuzz.cfg");
  if (!stripped || !(*stripped == file->domain)) {
    std::fprintf(stderr, "the stripped config does not read back to the same domain:\n%s\n", file->stripped.c_str());
    std::abort();
  }
  for (const kiln::Expression& expression : file->expressions)
    if (kiln::expression_info(expression.kind()).kind != expression.kind()) std::abort();
  return 0;
}

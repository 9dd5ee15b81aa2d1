// Fuzzes the Xen domain config reader. Beyond "no crash", whatever parses
// must write back to a config that parses to the same spec, and must either
// become libvirt XML or be refused with an error.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "formats/domain/libvirt_xml.h"
#include "formats/domain/xen_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = kiln::parse_xen_config(text, "fuzz.cfg");
  if (!spec) return 0;
  auto written = kiln::write_xen_config(*spec);
  if (!written) {
    std::fprintf(stderr, "a parsed spec did not write: %s\n", written.error().to_string().c_str());
    std::abort();
  }
  auto reread = kiln::parse_xen_config(*written, "written.cfg");
  if (!reread || !(*reread == *spec)) {
    std::fprintf(stderr, "the written config does not read back the same:\n%s\n%s\n",
                 written->c_str(), reread ? "(different spec)" : reread.error().to_string().c_str());
    std::abort();
  }
  (void)kiln::write_libvirt_xml(*spec, {});
  return 0;
}

// Fuzzes the xvm.xml reader. Beyond "no crash": an error is a bad-input
// error placed in the file; every vdi of a description that reads names a
// safe member; and writing it gives a text that reads again, and that
// writes out the same once more (a fixed point after one round).
#include <cstdint>
#include <string_view>

#include "feeds/xvm_xml.h"
#include "tests/fuzz/fuzz_invariant.h"

using kiln::fuzzing::broken;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto xvm = kiln::parse_xvm_xml(text, "fuzz.xml");
  if (!xvm) {
    if (xvm.error().kind != kiln::ErrorKind::kBadInput || xvm.error().where.file != "fuzz.xml")
      broken("xvm.xml error without kind or place:", xvm.error().to_string());
    return 0;
  }
  for (const auto& vdi : xvm->vdis)
    if (!kiln::is_safe_member_name(vdi.member)) broken("an unsafe member name was accepted:", vdi.member);
  auto written = kiln::write_xvm_xml(*xvm);
  if (!written) broken("a description that reads does not write:", written.error().to_string());
  auto again = kiln::parse_xvm_xml(*written, "written.xml");
  if (!again) broken("a written description does not read back:", again.error().to_string() + "\n" + *written);
  auto rewritten = kiln::write_xvm_xml(*again);
  if (!rewritten || *rewritten != *written) broken("writing is not stable after one round:", *written);
  if (again->vdis.size() != xvm->vdis.size() || again->vms.size() != xvm->vms.size())
    broken("the written description lost vdis or vms:", *written);
  return 0;
}

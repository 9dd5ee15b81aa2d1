// Fuzzes the manifest.json reader (formats/image/image_manifest.h), which boot,
// publish and pull run on manifests from anywhere (a pulled .xvm carries
// one). Properties: no crash, and what reads writes back to a text that
// reads to the same manifest.
#include <cstdint>
#include <string>

#include "formats/image/image_manifest.h"
#include "tests/fuzz/fuzz_invariant.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto read = kiln::read_image_manifest(text, "fuzz.json");
  if (!read) return 0;
  auto again = kiln::read_image_manifest(kiln::write_image_manifest(*read), "rewritten.json");
  if (!again) kiln::fuzzing::broken("a manifest that read does not read once rewritten", again.error().to_string());
  if (!(*again == *read)) kiln::fuzzing::broken("a rewritten manifest reads differently", text);
  return 0;
}

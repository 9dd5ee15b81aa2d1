// Fuzzes the manifest.txt / manifest.sha256 reader with each digest. Beyond
// "no crash": an error is a bad-input error placed in the file; every digest
// read has the algorithm's length in lower-case hex; and what reads writes
// back to a text that reads to the same entries.
#include <cstdint>
#include <string_view>

#include "feeds/checksum_manifest.h"
#include "tests/fuzz/fuzz_invariant.h"

using kiln::fuzzing::broken;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (auto [algorithm, length] : {std::pair{kiln::HashAlgorithm::kSha1, size_t{40}},
                                   std::pair{kiln::HashAlgorithm::kSha256, size_t{64}},
                                   std::pair{kiln::HashAlgorithm::kSha512, size_t{128}}}) {
    auto manifest = kiln::parse_checksum_manifest(text, algorithm, "fuzz.txt");
    if (!manifest) {
      if (manifest.error().kind != kiln::ErrorKind::kBadInput || manifest.error().where.file != "fuzz.txt")
        broken("manifest error without kind or place:", manifest.error().to_string());
      continue;
    }
    for (const auto& entry : manifest->entries)
      if (entry.digest.size() != length ||
          entry.digest.find_first_not_of("0123456789abcdef") != std::string::npos)
        broken("a malformed digest was accepted:", entry.digest);
    auto written = kiln::write_checksum_manifest(*manifest);
    if (!written) broken("a manifest that reads does not write:", written.error().to_string());
    auto again = kiln::parse_checksum_manifest(*written, algorithm, "written.txt");
    if (!again || again->entries != manifest->entries) broken("a written manifest reads differently:", *written);
  }
  return 0;
}

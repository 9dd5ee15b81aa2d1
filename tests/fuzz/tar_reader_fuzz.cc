// Fuzzes the archive reader with arbitrary bytes in any format or
// compression libarchive detects. Beyond "no crash": every path it hands
// out is normalised and stays inside the image (no "/" start, no ".." or "."
// component, no empty component), names and symlink targets keep to the
// limits in tar_reader.h, and data pieces never go backwards. Under
// libFuzzer, -malloc_limit_mb (default 2048) makes an allocation sized by a
// hostile header a finding (a 3 GiB one was, for a 1.5 KiB cpio).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "formats/tree/tar_reader.h"
#include "tests/fuzz/fuzz_invariant.h"

namespace {

// Stops runaway inputs (a tiny compressed archive of endless entries).
constexpr int kMaxEntries = 4096;
constexpr uint64_t kMaxDataBytes = 64 << 20;

void check_path(std::string_view path, std::string_view what) {
  bool bad = path.starts_with('/') || path.ends_with('/');
  size_t start = 0;
  while (!bad && !path.empty() && start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    bad = part.empty() || part == "." || part == "..";
    start = slash + 1;
  }
  if (bad) {
    std::fprintf(stderr, "the reader let through the %s '%.*s'\n", std::string(what).c_str(),
                 static_cast<int>(path.size()), path.data());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto reader = kiln::TarReader::open_memory(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz.tar");
  if (!reader) return 0;
  kiln::TarEntry entry;
  uint64_t data_bytes = 0;
  for (int i = 0; i < kMaxEntries; ++i) {
    auto more = reader->next(entry);
    if (!more || !*more) break;
    check_path(entry.path, "path");
    if (entry.type == kiln::EntryType::kHardlink) check_path(entry.link_target, "hardlink target");
    if (entry.path.size() > kiln::kMaxNameBytes || entry.link_target.size() > kiln::kMaxNameBytes)
      kiln::fuzzing::broken("the reader let through a name over the limit", entry.path.substr(0, 100));
    if (entry.type == kiln::EntryType::kSymlink && entry.link_target.size() > kiln::kMaxLinkTargetBytes)
      kiln::fuzzing::broken("the reader let through a symlink target over the limit", entry.path);
    kiln::DataChunk chunk;
    uint64_t end = 0;
    for (;;) {
      auto piece = reader->read_data(chunk);
      if (!piece || !*piece) break;
      if (chunk.offset < end) {
        std::fprintf(stderr, "data went backwards: offset %llu after %llu\n",
                     static_cast<unsigned long long>(chunk.offset),
                     static_cast<unsigned long long>(end));
        std::abort();
      }
      end = chunk.offset + chunk.size;
      data_bytes += chunk.size;
      if (data_bytes > kMaxDataBytes) return 0;
    }
  }
  return 0;
}

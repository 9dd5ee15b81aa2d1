// Fuzzes the archive-to-ext4 writer: each input is read as an archive
// (TarReader) and imported into a copy of a small, freshly formatted ext4
// image (Ext4Image::import), the assemble step of every bake. Beyond "no
// crash": an import that succeeds and closes leaves a filesystem that
// `e2fsck -fn` finds clean (run only then, as it costs a process). It runs
// in the sandbox of fuzz_sandbox.h only for its tmpfs.
#include <cstdint>
#include <filesystem>
#include <string>

#include "formats/ext4/ext4_image.h"
#include "formats/tree/tar_reader.h"
#include "tests/fuzz/fuzz_files.h"
#include "tests/fuzz/fuzz_invariant.h"
#include "tests/fuzz/fuzz_sandbox.h"

namespace {

namespace fs = std::filesystem;

fs::path g_template;

fs::path make_template_image(const fs::path& dir) {
  kiln::Ext4Options options;
  options.size_bytes = 8 << 20;
  options.uuid = kiln::Uuid::from_name("fuzz/tar-to-ext4");
  options.hash_seed = kiln::Uuid::from_name("fuzz/tar-to-ext4/hash-seed");
  options.timestamp = 1700000000;
  fs::path image = dir / "template.img";
  auto formatted = kiln::Ext4Image::format(image, options);
  if (!formatted) kiln::fuzzing::broken("cannot format the template", formatted.error().to_string());
  if (auto closed = formatted->close(); !closed)
    kiln::fuzzing::broken("cannot close the template", closed.error().to_string());
  return image;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kiln::fuzzing::enter_sandbox(*argc, *argv);
  g_template = make_template_image(kiln::fuzzing::keep_directory());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto reader = kiln::TarReader::open_memory(std::string(reinterpret_cast<const char*>(data), size), "fuzz.tar");
  if (!reader) return 0;
  fs::path image = kiln::fuzzing::fresh_work_directory() / "root.img";
  fs::copy_file(g_template, image);
  auto ext4 = kiln::Ext4Image::open(image);
  if (!ext4) kiln::fuzzing::broken("cannot open a copy of the template", ext4.error().to_string());
  auto imported = ext4->import(*reader);
  if (!imported || !ext4->close()) return 0;
  kiln::fuzzing::check_fsck_clean(image, "an import that succeeded");
  return 0;
}

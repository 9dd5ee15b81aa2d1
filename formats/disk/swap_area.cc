#include "formats/disk/swap_area.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/files.h"
#include "base/subprocess.h"

namespace kiln {

Result<> write_swap_area(const std::filesystem::path& image, uint64_t offset, uint64_t size, const Uuid& uuid,
                         std::string_view label) {
  if (size < 10 * kSwapHeaderSize)
    return fail(ErrorKind::kBadInput, "a swap area of {} bytes is too small: mkswap needs at least 10 pages", size);
  KILN_ASSIGN(std::string mkswap, find_program("mkswap"));
  // mkswap writes to the start of a file only: it makes the area in a
  // sparse scratch file of the same size, whose header page is copied over.
  KILN_ASSIGN(TempDir scratch, TempDir::create(std::filesystem::temp_directory_path(), "kiln-swap"));
  std::filesystem::path area = scratch.path() / "swap";
  {
    KILN_ASSIGN(UniqueFd created, open_file(area, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (::ftruncate(created.get(), static_cast<off_t>(size)) != 0) return fail_errno("cannot size", area.string(), errno);
  }
  Command command;
  command.argv = {mkswap, "--pagesize", std::to_string(kSwapHeaderSize), "--uuid", uuid.to_string()};
  if (!label.empty()) command.argv.insert(command.argv.end(), {"--label", std::string(label)});
  command.argv.push_back(area.string());
  command.env = {"LC_ALL=C"};
  if (auto done = run(command); !done)
    return std::unexpected(std::move(done).error().with_context(fmt::format("{}: swap area", image.string())));
  KILN_ASSIGN(UniqueFd source, open_file(area, O_RDONLY | O_CLOEXEC));
  KILN_ASSIGN(UniqueFd target, open_file(image, O_RDWR | O_CLOEXEC));
  std::string header(kSwapHeaderSize, '\0');
  if (::pread(source.get(), header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()))
    return fail_errno("cannot read", area.string(), errno);
  return pwrite_all(target.get(), header.data(), header.size(), offset, image.string());
}

Result<bool> has_swap_signature(const std::filesystem::path& image, uint64_t offset) {
  KILN_ASSIGN(UniqueFd file, open_file(image, O_RDONLY | O_CLOEXEC));
  for (uint64_t page = 4096; page <= 65536; page *= 2) {
    char signature[10];
    off_t at = static_cast<off_t>(offset + page - sizeof signature);
    ssize_t got = ::pread(file.get(), signature, sizeof signature, at);
    if (got < 0) return fail_errno("cannot read", image.string(), errno);
    if (got < static_cast<ssize_t>(sizeof signature)) return false;
    std::string_view seen(signature, sizeof signature);
    if (seen == "SWAPSPACE2" || seen == "SWAP-SPACE") return true;
  }
  return false;
}

}  // namespace kiln

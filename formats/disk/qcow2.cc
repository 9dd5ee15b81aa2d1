#include "formats/disk/qcow2.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/files.h"
#include "base/subprocess.h"

namespace kiln {

Result<> convert_to_qcow2(const std::filesystem::path& raw, const std::filesystem::path& qcow2) {
  std::string what = fmt::format("converting {} to qcow2", raw.string());
  struct stat st;
  if (::stat(raw.c_str(), &st) != 0)
    return fail_errno("cannot convert to qcow2", raw.string(), errno);
  if (!S_ISREG(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: cannot convert to qcow2: not a regular file", raw.string());
  KILN_ASSIGN(AtomicFile output, AtomicFile::create(qcow2));
  std::error_code ec;
  // Absolute paths: qemu-img would take "name:rest" for a protocol prefix.
  std::filesystem::path input = std::filesystem::absolute(raw, ec);
  if (ec) return fail_errno("cannot resolve", raw.string(), ec.value());
  std::filesystem::path temp = std::filesystem::absolute(output.temp_path(), ec);
  if (ec) return fail_errno("cannot resolve", output.temp_path().string(), ec.value());
  auto done = run({"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", input.string(),
                   temp.string()});
  if (!done) {
    Error error = std::move(done).error();
    if (error.detail.find("No space left") != std::string::npos) error.kind = ErrorKind::kNoSpace;
    return std::unexpected(std::move(error).with_context(what));
  }
  // Flushed by name: qemu-img may have replaced the file our descriptor holds.
  KILN_ASSIGN(UniqueFd written, open_file(temp, O_RDONLY));
  if (::fsync(written.get()) != 0) return fail_errno("fsync", temp.string(), errno);
  return output.commit();
}

}  // namespace kiln

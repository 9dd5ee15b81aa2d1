#include "crypto/secret.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "base/files.h"

namespace kiln {
namespace {

// Key files larger than this are not keys (cryptsetup's own limit is 8 MiB).
constexpr size_t kMaxKeyFile = 8 << 20;

Result<Secret> read_secret_file(const std::filesystem::path& path, bool first_line) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("cannot stat", path.string(), errno);
  if (!S_ISREG(st.st_mode)) return fail(ErrorKind::kBadInput, "{}: not a regular file", path.string());
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyFile)
    return fail(ErrorKind::kBadInput, "{}: larger than 8 MiB, which is not a key or passphrase file", path.string());
  Secret buffer(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < buffer.size()) {
    ssize_t n = ::read(fd.get(), buffer.data() + done, buffer.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("cannot read", path.string(), errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  std::string_view content(buffer.data(), done);
  if (first_line) {
    content = content.substr(0, content.find('\n'));
    if (content.ends_with('\r')) content.remove_suffix(1);
    if (content.empty())
      return fail(ErrorKind::kBadInput, "{}: the first line is empty; a passphrase file holds the passphrase on its first line",
                  path.string());
  } else if (content.empty()) {
    return fail(ErrorKind::kBadInput, "{}: the key file is empty", path.string());
  }
  return Secret::from(content);
}

}  // namespace

Secret::Secret(size_t size) : size_(size) {
  if (size == 0) return;
  data_ = static_cast<char*>(std::calloc(size, 1));
  if (!data_) std::abort();
  // Best effort: without CAP_IPC_LOCK or room under RLIMIT_MEMLOCK the
  // secret stays swappable, which is what every other program does.
  locked_ = ::mlock(data_, size) == 0;
}

Secret::Secret(Secret&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

Secret::~Secret() { release(); }

void Secret::release() {
  if (!data_) return;
  OPENSSL_cleanse(data_, size_);
  if (locked_) ::munlock(data_, size_);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  locked_ = false;
}

bool Secret::operator==(const Secret& other) const {
  return size_ == other.size_ && (size_ == 0 || CRYPTO_memcmp(data_, other.data_, size_) == 0);
}

Result<Secret> Secret::random(size_t size) {
  Secret out(size);
  if (RAND_priv_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) != 1)
    return fail(ErrorKind::kFailed, "the system's random generator gave no {} bytes for a key", size);
  return out;
}

Result<Secret> Secret::passphrase_file(const std::filesystem::path& path) { return read_secret_file(path, true); }

Result<Secret> Secret::key_file(const std::filesystem::path& path) { return read_secret_file(path, false); }

Secret Secret::from(std::string_view bytes) {
  Secret out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace kiln

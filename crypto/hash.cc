#include "crypto/hash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <openssl/evp.h>

#include "base/files.h"

namespace kiln {

struct Hasher::State {
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(context); }
};

Hasher::Hasher(HashAlgorithm algorithm) : state_(std::make_unique<State>()) {
  const EVP_MD* md = algorithm == HashAlgorithm::kSha1     ? EVP_sha1()
                     : algorithm == HashAlgorithm::kSha512 ? EVP_sha512()
                                                           : EVP_sha256();
  EVP_DigestInit_ex(state_->context, md, nullptr);
}

Hasher::Hasher(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

Hasher& Hasher::update(const void* data, size_t size) {
  EVP_DigestUpdate(state_->context, data, size);
  return *this;
}

Hasher& Hasher::update(std::string_view data) { return update(data.data(), data.size()); }

Hasher& Hasher::field(std::string_view data) {
  uint64_t size = data.size();
  update(&size, sizeof size);
  return update(data);
}

std::string Hasher::raw_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->context, digest, &length);
  return std::string(reinterpret_cast<char*>(digest), length);
}

std::string Hasher::hex_digest() { return to_hex(raw_digest()); }

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) { return Hasher().update(data).hex_digest(); }

// Holes are hashed from a buffer of zeros instead of being read: reading a
// hole makes the kernel clear pages, which costs more than hashing them, and
// disk images are mostly holes.
Result<std::string> file_digest_hex(const std::filesystem::path& path, HashAlgorithm algorithm) {
  KILN_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat", path.string(), errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  static const std::string zeros(1 << 20, '\0');
  std::string buffer(1 << 20, '\0');
  Hasher hasher(algorithm);
  auto hash_zeros = [&](uint64_t length) {
    for (; length > 0;) {
      uint64_t chunk = std::min<uint64_t>(length, zeros.size());
      hasher.update(zeros.data(), chunk);
      length -= chunk;
    }
  };
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd.get(), static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0 && errno != ENXIO) return fail_errno("seek", path.string(), errno);
    uint64_t data_start = data < 0 ? size : static_cast<uint64_t>(data);
    hash_zeros(data_start - pos);
    if (data_start >= size) break;
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    uint64_t data_end = hole < 0 ? size : std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    for (uint64_t at = data_start; at < data_end;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), data_end - at));
      ssize_t n = ::pread(fd.get(), buffer.data(), want, static_cast<off_t>(at));
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail_errno("cannot read", path.string(), errno);
      }
      if (n == 0) return fail(ErrorKind::kFailed, "{}: changed while being hashed", path.string());
      hasher.update(buffer.data(), static_cast<size_t>(n));
      at += static_cast<uint64_t>(n);
    }
    pos = data_end;
  }
  return hasher.hex_digest();
}

}  // namespace kiln

#include "crypto/password.h"

#include <crypt.h>
#include <string.h>

#include <memory>

#include "base/files.h"
#include "base/hash.h"

namespace kiln {

void wipe(std::string& secret) {
  explicit_bzero(secret.data(), secret.size());
  secret.clear();
}

Result<std::string> hash_password(std::string_view password, std::string_view salt_seed) {
  std::string random = Hasher().field("kiln-password-salt").field(salt_seed).raw_digest();
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$y$", 0, random.data(), static_cast<int>(random.size()), setting,
                        sizeof setting))
    return fail(ErrorKind::kFailed, "cannot make a yescrypt salt: {}", std::strerror(errno));
  auto data = std::make_unique<crypt_data>();
  std::string phrase(password);
  const char* hashed = crypt_rn(phrase.c_str(), setting, data.get(), sizeof(crypt_data));
  wipe(phrase);
  std::string out = hashed && hashed[0] != '*' ? std::string(hashed) : std::string();
  explicit_bzero(data.get(), sizeof(crypt_data));
  if (out.empty()) return fail(ErrorKind::kFailed, "password hashing failed");
  return out;
}

Result<std::string> read_password_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  std::string line = text->substr(0, text->find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  wipe(*text);
  if (line.empty()) return fail(ErrorKind::kBadInput, "{}: the password file is empty", path);
  return line;
}

}  // namespace kiln

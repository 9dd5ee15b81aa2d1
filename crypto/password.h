// Password hashing for /etc/shadow: yescrypt through libxcrypt, the default
// of Debian 12. The salt is derived from a caller-given seed (never from the
// password), so a reproducible bake gives the same shadow file, while two
// images or two users never share a salt.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// Hashes `password` into a "$y$..." crypt string. `salt_seed` must not depend
// on the password.
Result<std::string> hash_password(std::string_view password, std::string_view salt_seed);

// Overwrites a secret in memory (not optimised away) and empties it.
void wipe(std::string& secret);

// Reads the first line of a password file, without its newline. The error
// names the file but never shows its content.
Result<std::string> read_password_file(const std::string& path);

}  // namespace kiln

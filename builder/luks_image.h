// LuksImage: an existing image file (root.img, any filesystem image)
// encrypted into a new LUKS volume file, offline, in userspace, as
// `cryptsetup reencrypt --encrypt` would make it but without device-mapper
// and without rewriting what holds nothing: for an ext2/3/4 image only the
// blocks in use are encrypted, the rest stays holes.
#pragma once

#include <filesystem>
#include <span>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/root_stack.h"
#include "crypto/luks.h"

namespace kiln {

// Writes OUT: the LUKS header, then `plain` encrypted. Keyslot 0 opens with
// the first key, and so on.
Result<EncryptionInfo> encrypt_image(const std::filesystem::path& plain, const std::filesystem::path& out,
                                     const LuksSettings& settings, std::span<const Secret* const> keys,
                                     Reporter& reporter);

}  // namespace kiln

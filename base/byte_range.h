// ByteRange: a stretch of a file or device, for the code that moves only
// the parts of an image that hold something.
#pragma once

#include <cstdint>

namespace kiln {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

}  // namespace kiln

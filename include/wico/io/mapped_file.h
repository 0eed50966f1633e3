// A read-only memory map of a whole file. Tensors read from weight files are views of it, so a
// checkpoint costs no memory until its tensors are copied into a model; release() then drops the
// pages already copied, which keeps a load's peak near the size of the weights.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string_view>

namespace wico::io {

class MappedFile {
 public:
  // Throws wico::Error naming the file when it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const char* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::string_view bytes() const { return {data_, size_}; }
  // Drops the resident pages of [offset, offset + length) (madvise DONTNEED): they are read from
  // the file again if touched. A hint; never fails.
  void release(std::size_t offset, std::size_t length) const;

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace wico::io

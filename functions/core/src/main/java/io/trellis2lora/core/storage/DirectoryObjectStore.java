package io.trellis2lora.core.storage;

import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;

/** Local mode: the keys are paths under one directory; writes go through a temporary file so readers never see half. */
public final class DirectoryObjectStore implements ObjectStore {
    private final Path root;

    public DirectoryObjectStore(Path root) {
        this.root = root.toAbsolutePath().normalize();
    }

    public Path root() {
        return root;
    }

    public Path path(String key) {
        Path p = root.resolve(key).normalize();
        if (!p.startsWith(root)) {
            throw new IllegalArgumentException("key outside the storage directory: " + key);
        }
        return p;
    }

    @Override
    public String uri(String key) {
        return path(key).toString();
    }

    @Override
    public Optional<String> keyOf(String uri) {
        Path p = Path.of(uri).toAbsolutePath().normalize();
        return p.startsWith(root) ? Optional.of(root.relativize(p).toString().replace('\\', '/')) : Optional.empty();
    }

    @Override
    public Optional<byte[]> read(String key) throws IOException {
        try {
            return Optional.of(Files.readAllBytes(path(key)));
        } catch (NoSuchFileException e) {
            return Optional.empty();
        }
    }

    @Override
    public void write(String key, byte[] data, String contentType) throws IOException {
        Path target = path(key);
        replace(complete(target, data), target);
    }

    /** Copied to a temporary file beside the key, moved in place only once the body has been read to its end. */
    @Override
    public void write(String key, InputStream body, String contentType) throws IOException {
        Path target = path(key);
        Path tmp = complete(target, new byte[0]);
        try {
            try (var out = Files.newOutputStream(tmp)) {
                body.transferTo(out);
            }
            replace(tmp, target);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private static void replace(Path tmp, Path target) throws IOException {
        try {
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** readFully: an EOFException when the file ends before the range does. */
    @Override
    public byte[] readRange(String key, long offset, int length) throws IOException {
        Path p = path(key);
        if (!Files.isRegularFile(p)) {
            throw new NoSuchFileException(p.toString());
        }
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            byte[] out = new byte[length];
            f.seek(offset);
            f.readFully(out);
            return out;
        }
    }

    /** A hard link fails when the name exists, so the check and the write are one step; readers never see half. */
    @Override
    public boolean create(String key, byte[] data, String contentType) throws IOException {
        Path target = path(key);
        Path tmp = complete(target, data);
        try {
            Files.createLink(target, tmp);
            return true;
        } catch (java.nio.file.FileAlreadyExistsException e) {
            return false;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The bytes in a temporary file beside {@code target}, readable as any file the user makes. */
    private static Path complete(Path target, byte[] data) throws IOException {
        Files.createDirectories(target.getParent());
        Path tmp = Files.createTempFile(target.getParent(), ".tmp-", "");
        Files.write(tmp, data);
        try {
            // Temporary files are private; what is stored here is the user's, readable as any file they make.
            Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
        } catch (UnsupportedOperationException e) {
            // not a POSIX file system
        }
        return tmp;
    }

    @Override
    public long size(String key) throws IOException {
        Path p = path(key);
        return Files.isRegularFile(p) ? Files.size(p) : -1;
    }

    @Override
    public void delete(String key) throws IOException {
        Files.deleteIfExists(path(key));
    }
}

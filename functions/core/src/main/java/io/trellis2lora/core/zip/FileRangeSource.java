package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/** A local archive read through a file channel (local mode, and archives staged in a temporary file). */
public final class FileRangeSource implements RangeSource {
    private final Path path;
    private final FileChannel channel;
    private int reads;

    public FileRangeSource(Path path) throws IOException {
        this.path = path;
        if (Files.isDirectory(path)) {
            throw new InputRefusedException("data_url '" + path + "' is a directory, not a .zip archive");
        }
        try {
            this.channel = FileChannel.open(path, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new InputRefusedException("data_url '" + path + "' does not exist");
        }
    }

    @Override
    public long size() throws IOException {
        return channel.size();
    }

    @Override
    public byte[] read(long offset, int length) throws IOException {
        reads++;
        ByteBuffer buf = ByteBuffer.allocate(length);
        long pos = offset;
        while (buf.hasRemaining()) {
            int n = channel.read(buf, pos);
            if (n < 0) {
                throw new EOFException("read past the end of " + path + " at byte " + pos);
            }
            pos += n;
        }
        return buf.array();
    }

    @Override
    public String describe() {
        return path.toString();
    }

    @Override
    public int readCount() {
        return reads;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}

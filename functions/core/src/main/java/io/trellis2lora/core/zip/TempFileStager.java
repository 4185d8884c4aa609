package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Local mode: an https archive whose server ignores Range is copied to a file: a temporary one (the command line's
 * inspect and estimate), or a given path (the local Prepare's requests/&lt;id&gt;/input.zip, which the jobs read).
 */
public final class TempFileStager implements Stager {
    private final Path target;

    public TempFileStager() {
        this(null);
    }

    /** @param target where the copy goes; null for a new temporary file */
    public TempFileStager(Path target) {
        this.target = target;
    }

    @Override
    public String stage(InputStream body, String sourceName) throws IOException {
        Path out;
        if (target == null) {
            out = Files.createTempFile("trellis2-input-", ".zip");
        } else {
            Files.createDirectories(target.getParent());
            out = target;
        }
        try (OutputStream o = Files.newOutputStream(out)) {
            byte[] buf = new byte[1 << 20];
            long total = 0;
            for (int n; (n = body.read(buf)) > 0; ) {
                total += n;
                if (total > ZipInspector.MAX_ARCHIVE_BYTES) {
                    throw new InputRefusedException("archive at " + sourceName + " is over the "
                            + ZipInspector.MAX_ARCHIVE_BYTES / (1024 * 1024) + " MB limit");
                }
                o.write(buf, 0, n);
            }
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(out);
            throw e;
        }
        return out.toString();
    }

    @Override
    public void discard(String uri) throws IOException {
        Files.deleteIfExists(Path.of(uri));
    }
}

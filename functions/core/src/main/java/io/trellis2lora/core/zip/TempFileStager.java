package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;

/** Local mode: an https archive whose server ignores Range is copied to a temporary file. */
public final class TempFileStager implements Stager {
    @Override
    public String stage(InputStream body, String sourceName) throws IOException {
        Path tmp = Files.createTempFile("trellis2-input-", ".zip");
        try (OutputStream out = Files.newOutputStream(tmp)) {
            byte[] buf = new byte[1 << 20];
            long total = 0;
            for (int n; (n = body.read(buf)) > 0; ) {
                total += n;
                if (total > ZipInspector.MAX_ARCHIVE_BYTES) {
                    throw new InputRefusedException("archive at " + sourceName + " is over the "
                            + ZipInspector.MAX_ARCHIVE_BYTES / (1024 * 1024) + " MB limit");
                }
                out.write(buf, 0, n);
            }
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        return tmp.toString();
    }

    @Override
    public void discard(String uri) throws IOException {
        Files.deleteIfExists(Path.of(uri));
    }
}

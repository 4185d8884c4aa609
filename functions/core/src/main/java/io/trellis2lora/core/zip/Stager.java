package io.trellis2lora.core.zip;

import java.io.IOException;
import java.io.InputStream;

/**
 * Where an https archive goes when its server ignores Range requests: it is streamed there whole (stopping with a
 * refusal past 8192 MB) and inspected from the copy, which the later steps then read instead of the URL. Only
 * Prepare and the command line stage; the API never does (it defers, see {@link ArchiveOpener#open}).
 */
public interface Stager {
    /** Copies {@code body}; returns the URI of the copy (s3://... or a local path). */
    String stage(InputStream body, String sourceName) throws IOException;

    /** Removes a copy made by {@link #stage} (when its inspection refused it). */
    void discard(String uri) throws IOException;
}

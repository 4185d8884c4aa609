package io.trellis2lora.core.validation;

import io.trellis2lora.core.InputRefusedException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;

/** A request given as a file on this machine (the command line): its text, and the local paths it names. */
public final class RequestFiles {
    private RequestFiles() {
    }

    public static String read(Path requestFile) throws IOException {
        try {
            return Files.readString(requestFile);
        } catch (NoSuchFileException e) {
            throw new InputRefusedException("request file " + requestFile + " does not exist");
        }
    }

    /** A URL with a scheme, or an absolute path, as it is; a relative path from the request file's folder. */
    public static String resolve(Path requestFile, String url) {
        boolean hasScheme = url != null && url.toLowerCase(Locale.ROOT).matches("^[a-z][a-z0-9+.-]*://.*");
        if (url == null || hasScheme || Path.of(url).isAbsolute()) {
            return url;
        }
        return requestFile.toAbsolutePath().getParent().resolve(url).normalize().toString();
    }
}

package io.trellis2lora.core.api;

import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.ObjectStore;
import io.trellis2lora.core.storage.S3ObjectStore;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;
import software.amazon.awssdk.services.sfn.SfnClient;

/** The configuration and clients an API operation works with; tests build one pointed at the local emulator. */
public record Services(PlatformConfig config, S3Client s3, S3Presigner presigner, SfnClient sfn, SafeHttp http) {

    /** What a deployed function uses: settings from its environment, region and credentials from the default chain. */
    public static Services fromEnvironment() {
        PlatformConfig config = PlatformConfig.fromEnvironment(System::getenv);
        return new Services(config,
                S3Client.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build(),
                S3Presigner.create(),
                SfnClient.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build(),
                new SafeHttp(config.addressPolicy()));
    }

    /** The requests bucket (request.json, results, adapters, datasets). */
    public ObjectStore requests() {
        return new S3ObjectStore(s3, config.requestsBucket());
    }
}

package io.trellis2lora.core.net;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.testing.TestPaths;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The address table the worker's own download (trellis2_worker.net) is tested on: the same verdict here. */
class AddressPolicyTest {
    private static final Map<String, AddressPolicy> POLICIES = Map.of("default", AddressPolicy.PUBLIC_ONLY,
            "loopback", new AddressPolicy(true, false), "private", new AddressPolicy(false, true));

    static Stream<Named<JsonNode>> cases() throws IOException {
        List<Named<JsonNode>> out = new ArrayList<>();
        Json.MAPPER.readTree(Files.readAllBytes(TestPaths.repo().resolve(
                "batch-containers/worker/tests/address_policy_cases.json"))).get("cases")
                .forEach(c -> out.add(Named.of(c.get("address").asText(), c)));
        return out.stream();
    }

    @ParameterizedTest
    @MethodSource("cases")
    void sameVerdictAsTheWorker(JsonNode c) throws IOException {
        InetAddress a = InetAddress.getByName(c.get("address").asText());  // a literal: no DNS lookup
        for (var p : POLICIES.entrySet()) {
            if (c.has(p.getKey())) {
                JsonNode want = c.get(p.getKey());
                assertEquals(want.isNull() ? null : want.asText(), p.getValue().refusal(a), p.getKey());
            }
        }
    }
}

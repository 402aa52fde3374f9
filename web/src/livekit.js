// Re-exported for the pages: one bundle, no CDN.
export * from "livekit-client";

/// The release, shown by `--version` and in the `User-Agent` header.
public enum ExportTaskCleanerVersion {
    public static let current = "0.2.0"
}

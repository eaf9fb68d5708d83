use std::{env, fs, path::Path};

fn main() {
    // refinery embeds sql/migrations; sql/functions and sql/policies are embedded
    // here, in file-name order, and re-applied on every migrate.
    println!("cargo:rerun-if-changed=sql");
    let root = env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut out = String::from("pub const REPEATABLE: &[(&str, &str)] = &[\n");
    for dir in ["functions", "policies"] {
        let path = Path::new(&root).join("sql").join(dir);
        let mut files: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        for f in files {
            let name = format!("{dir}/{}", f.file_name().unwrap().to_string_lossy());
            out.push_str(&format!(
                "    ({name:?}, include_str!({:?})),\n",
                f.display()
            ));
        }
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("repeatable_sql.rs"),
        out,
    )
    .unwrap();
}
